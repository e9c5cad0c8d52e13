"""The predictor's OpenAPI document: a valid OpenAPI 3.1 document, the committed copy current,
and its request schema in step with the validator on the shared table of bad requests."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from edgecast.architecture import SBNConfig
from edgecast.predictor.openapi import openapi_document, request_schema, year_pattern
from edgecast.predictor.validation import (
    ALLOWED_FIELDS,
    RequestError,
    Years,
    parse_predict_request,
)
from edgecast_harness.bad_requests import BAD_INPUTS
from edgecast_harness.bodies import window_from_data
from edgecast_harness.paths import REPO

BODY = window_from_data()
# What JSON Schema cannot say; the validator answers these with a 400 naming the field, and the
# document's descriptions say so.
NOT_IN_THE_SCHEMA = {
    "timestamps-with-a-gap",
    "timestamps-with-a-repeat",
    "timestamps-backwards",
    # an offset that moves the instant out of the years
    "last_timestamp-2100-by-offset-only",
    # ECMA-262's $ matches only at the end; Python's re, which jsonschema uses, also before a
    # final newline
    "last_timestamp-trailing-newline",
}


def test_the_document_is_valid_openapi_3_1():
    document = openapi_document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_the_committed_document_is_the_generated_one():
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json is out of date: python -m edgecast.predictor.openapi > docs/openapi.json"
    )


def test_the_request_schema_names_the_fields_the_validator_allows():
    schema = request_schema(SBNConfig())
    assert set(schema["properties"]) == set(ALLOWED_FIELDS)
    assert schema["properties"]["loads"]["minItems"] == SBNConfig().window


@pytest.mark.parametrize(
    ("first", "last"), [(2000, 2100), (1995, 2037), (2001, 2001), (1970, 2009)]
)
def test_the_year_pattern_takes_exactly_the_years(first, last):
    pattern = re.compile(year_pattern(Years(first, last)))
    taken = [year for year in range(1900, 2200) if pattern.fullmatch(str(year))]
    assert taken == list(range(first, last + 1))


def test_a_model_with_temperature_requires_them():
    config = SBNConfig(use_temperature=True)
    validator = Draft202012Validator(request_schema(config))
    assert not validator.is_valid(BODY)
    assert validator.is_valid({**BODY, "temperatures": [5.0] * config.window})
    assert not Draft202012Validator(request_schema(SBNConfig())).is_valid(
        {**BODY, "temperatures": [5.0] * config.window}
    )


def _json_cases() -> list:
    cases = []
    for case in BAD_INPUTS:
        make_request, status, _ = case.values
        kwargs = make_request(BODY)
        if status == 400 and "json" in kwargs:
            cases.append(pytest.param(kwargs["json"], id=case.id))
    return cases


def test_a_valid_request_is_valid_for_both():
    assert Draft202012Validator(request_schema(SBNConfig())).is_valid(BODY)
    parse_predict_request(BODY, SBNConfig())


@pytest.mark.parametrize("body", _json_cases())
def test_a_request_the_validator_refuses_the_schema_refuses(body, request):
    with pytest.raises(RequestError):
        parse_predict_request(body, SBNConfig())
    valid = Draft202012Validator(request_schema(SBNConfig())).is_valid(body)
    case = request.node.callspec.id
    if case in NOT_IN_THE_SCHEMA:
        assert valid, f"{case} is refused by the schema now: take it off NOT_IN_THE_SCHEMA"
    else:
        assert not valid, f"the schema accepts {case}, which the validator refuses"
