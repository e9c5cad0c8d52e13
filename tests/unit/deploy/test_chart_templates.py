"""The chart's object templates are generated from templates/k8s: the committed ones are what the
generator writes now, the translation is exact for the syntax the templates use, and anything
else is refused rather than translated wrongly."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecast.deploy.chart import ChartError, chart_files, main, translate
from edgecast.deploy.manifests import PredictorSpec, recorded_spec, render

pytestmark = pytest.mark.unit

CHART = Path(__file__).resolve().parents[3] / "charts" / "edgecast-predictor"


def test_the_committed_chart_templates_are_the_generated_ones() -> None:
    for path, text in chart_files().items():
        assert (CHART / path).read_text() == text, f"{path}: run python -m edgecast.deploy.chart"
    assert main(["--check", str(CHART)]) == 0


def test_check_reports_a_stale_template(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--check", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0


def test_translation_of_each_construct() -> None:
    source = (
        "{#- comment #}\n"
        "a: {{ name | tojson }}\n"
        "b: {{ port | string | tojson }}\n"
        "{%- if flag %}\n"
        "c: {{ count | int }}\n"
        "{%- endif %}\n"
        '{%- if kind == "NodePort" or kind == "LoadBalancer" %}\n'
        "d: 1\n"
        "{%- endif %}\n"
    )
    assert translate(source, "t") == (
        "a: {{ $c.name | toJson }}\n"
        "b: {{ $c.port | toString | toJson }}\n"
        "{{- if $c.flag }}\n"
        "c: {{ $c.count | int }}\n"
        "{{- end }}\n"
        '{{- if or (eq $c.kind "NodePort") (eq $c.kind "LoadBalancer") }}\n'
        "d: 1\n"
        "{{- end }}\n"
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ name | upper }}",
        "{{ name ~ 'x' }}",
        "{% for x in items %}{% endfor %}",
        "{% if a != 'b' %}{% endif %}",
        "{{ labels['x'] }}",
    ],
)
def test_unknown_syntax_is_refused(source: str) -> None:
    with pytest.raises(ChartError, match="cannot translate"):
        translate(source, "t.j2")


def test_a_spec_recorded_with_whole_floats_reads_back_as_floats() -> None:
    spec = PredictorSpec(node="n", model_id="m", image="i", helm_release="edgecast")
    text = render(spec)["deployment"]["metadata"]["annotations"]["edgecast.io/spec"]
    compact = text.replace('"shutdown_delay_seconds": 2.0', '"shutdown_delay_seconds": 2')
    again = recorded_spec(compact, "m")
    assert again == spec
    assert isinstance(again.shutdown_delay_seconds, float)


def test_a_helm_release_name_is_checked() -> None:
    with pytest.raises(ValueError, match="helm_release"):
        PredictorSpec(node="n", model_id="m", image="i", helm_release="Not_A_Release").check()
