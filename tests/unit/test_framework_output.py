"""What the frameworks' native code writes is held while edgecast's own output goes through, and
shown when the command fails. Each case runs in a child Python (no TensorFlow: ``os.write`` to
descriptors 1 and 2 stands for its C++ logging)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import logging, os, sys
    from edgecast.framework_output import frameworks_held, held_framework_prints

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    @frameworks_held
    def command(fail):
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\\n")
        os.write(1, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
        print("ours on stdout")
        print("ours on stderr", file=sys.stderr)
        logging.getLogger("edgecast").info("ours logged")
        logging.getLogger("tensorflow").info("Assets written to: /tmp/x/assets")
        with held_framework_prints():
            print("Captures:\\n  1396: TensorSpec(shape=(), dtype=tf.resource, name=None)")
        if fail:
            raise RuntimeError("the LiteRT export failed")
        return 0

    sys.exit(command(len(sys.argv) > 1))
    """
)
CHATTER = ("cudart_stub", "XNNPACK", "Captures:", "TensorSpec", "Assets written")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_edgecasts_output_goes_through_and_the_frameworks_is_held():
    done = run()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ours on stdout\n"
    assert done.stderr == "ours on stderr\nINFO ours logged\n"
    for line in CHATTER:
        assert line not in done.stdout + done.stderr


def test_a_failure_shows_what_the_frameworks_wrote_before_it():
    failed = run("fail")
    assert failed.returncode == 1
    assert failed.stdout == "ours on stdout\n"
    held = failed.stderr.split("--- what the frameworks wrote before the failure ---\n")[1]
    for line in ("cudart_stub", "XNNPACK", "Captures:", "TensorSpec"):
        assert line in held
    assert held.index("---\nTraceback") > 0
    assert failed.stderr.rstrip().endswith("RuntimeError: the LiteRT export failed")


def test_the_frameworks_output_can_be_let_through_for_debugging():
    shown = run(EDGECAST_FRAMEWORK_OUTPUT="show")
    assert "Could not find cuda drivers" in shown.stderr
    assert "XNNPACK" in shown.stdout and "TensorSpec" in shown.stdout
