"""The report's export section shows the commands that score with and serve the bundle it describes."""

from __future__ import annotations

import html as html_lib
import re

from tests.report.test_report import render, section
from tunepipe.report.sections.export import BUNDLE
from tunepipe.serving.commands import add_commands


def test_the_export_section_shows_predict_and_serve_commands_that_parse(tmp_path):
    import argparse

    export = section(render(tmp_path), "export")
    block = html_lib.unescape(re.search(r"<pre>(.*?)</pre>", export, re.S).group(1))
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert lines[0].startswith(f"tunepipe predict {BUNDLE} ") and lines[1] == f"tunepipe serve {BUNDLE} --port 8000"
    assert "curl -s localhost:8000/v1/predict" in lines[2] and '{"inputs": ["..."]}' in lines[2]
    parser = argparse.ArgumentParser(prog="tunepipe")
    add_commands(parser.add_subparsers(dest="command"))
    predict = parser.parse_args(lines[0].split()[1:])
    assert (predict.command, str(predict.bundle), str(predict.output)) == ("predict", BUNDLE, "scored.csv")
    serve = parser.parse_args(lines[1].split()[1:])
    assert (serve.command, str(serve.bundle), serve.port) == ("serve", BUNDLE, 8000)
