"""The stage CLI every rule calls: atomic outputs, clear errors, helpful --help."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import tunepipe.stages
from tunepipe.errors import DataError
from tunepipe.stages.harness import Stage, main


def make_stage(body):
    return Stage(name="demo", summary="A demo stage.", inputs={"src": "an input file"}, outputs={"a": "first", "b": "second"}, run=body)


def args(tmp_path, params="{}"):
    (tmp_path / "in.txt").write_text("x")
    return ["--params", params, "--in", f"src={tmp_path / 'in.txt'}", "--out", f"a={tmp_path / 'a.txt'}", "--out", f"b={tmp_path / 'b.txt'}"]


def test_outputs_appear_only_when_the_stage_succeeds(tmp_path):
    def body(ctx):
        ctx.outputs["a"].write_text("done")
        ctx.outputs["b"].write_text(str(ctx.params["n"]))

    assert main(make_stage(body), args(tmp_path, '{"n": 3}')) == 0
    assert (tmp_path / "a.txt").read_text() == "done" and (tmp_path / "b.txt").read_text() == "3"
    assert not list(tmp_path.glob(".*partial"))


def test_a_failing_stage_leaves_no_output_that_looks_complete(tmp_path):
    def body(ctx):
        ctx.outputs["a"].write_text("half")
        raise DataError("mine.csv: column 'text' not found")

    assert main(make_stage(body), args(tmp_path)) == 2
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_a_crash_also_leaves_nothing_behind(tmp_path):
    def body(ctx):
        ctx.outputs["a"].write_text("half")
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        main(make_stage(body), args(tmp_path))
    assert not (tmp_path / "a.txt").exists() and not list(tmp_path.glob(".*partial"))


def test_an_output_the_stage_forgot_is_an_error(tmp_path):
    def body(ctx):
        ctx.outputs["a"].write_text("only a")

    with pytest.raises(RuntimeError, match="did not write outputs: b"):
        main(make_stage(body), args(tmp_path))
    assert not (tmp_path / "a.txt").exists()


def test_missing_input_is_reported(tmp_path, capsys):
    argv = args(tmp_path)
    (tmp_path / "in.txt").unlink()
    assert main(make_stage(lambda ctx: None), argv) == 2
    assert "input file(s) not found: src=" in capsys.readouterr().err


def test_user_errors_print_a_message_not_a_traceback(tmp_path):
    (tmp_path / "mine.csv").write_text("")
    cmd = [sys.executable, "-m", "tunepipe.stages.prepare", "--params",
           f'{{"data": {{"modality": "text", "source": "file", "path": "{tmp_path / "mine.csv"}", "format": "auto", "text_column": "t", "label_column": "l", "labels": null}}}}',
           "--out", f"rows={tmp_path / 'rows.jsonl'}", "--out", f"summary={tmp_path / 's.json'}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2
    assert "tunepipe prepare: error:" in result.stderr and "the file is empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "rows.jsonl").exists()


STAGES = sorted(module.name for module in pkgutil.iter_modules(tunepipe.stages.__path__) if module.name != "harness")


def test_every_rule_runs_a_stage_of_the_package():
    assert {"prepare", "clean", "split", "augment", "train", "trial", "ask", "select", "ensemble", "baseline", "evaluate", "robustness", "explain", "distill", "prune", "skip",
            "export", "report"} == set(STAGES)


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_has_help_listing_its_inputs_and_outputs(name):
    result = subprocess.run([sys.executable, "-m", f"tunepipe.stages.{name}", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "outputs (--out KEY=PATH)" in result.stdout
    # --help must not pay for importing torch/Lightning.
    probe = subprocess.run([sys.executable, "-c", f"import sys, tunepipe.stages.{name}; print('torch' in sys.modules)"], capture_output=True, text=True)
    assert probe.stdout.strip() == "False"


def test_wrong_arguments_are_explained(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(make_stage(lambda ctx: None), ["--params", "{}", "--in", f"nope={tmp_path}"])
    assert "unknown in 'nope'; this stage takes: src" in capsys.readouterr().err



def test_a_repeatable_input_collects_every_path_and_an_optional_one_may_be_absent(tmp_path):
    seen = {}

    def run(ctx):
        seen.update(inputs=dict(ctx.inputs), many=dict(ctx.many))
        ctx.outputs["out"].write_text("ok")

    stage = Stage(name="demo", summary="demo", inputs={"one": "a file", "many": "files"}, outputs={"out": "a file"},
                  run=run, optional=frozenset({"many"}), repeatable=frozenset({"many"}))
    one, a, b = (tmp_path / name for name in ("one", "a", "b"))
    for path in (one, a, b):
        path.write_text("x")
    out = tmp_path / "out"
    assert main(stage, ["--params", "{}", "--in", f"one={one}", "--in", f"many={a}", "--in", f"many={b}", "--out", f"out={out}"]) == 0
    assert seen["many"] == {"many": [a, b]} and seen["inputs"]["one"] == one
    assert main(stage, ["--params", "{}", "--in", f"one={one}", "--out", f"out={out}"]) == 0
    assert seen["many"] == {}
    assert main(stage, ["--params", "{}", "--in", f"one={one}", "--in", f"many={tmp_path / 'gone'}", "--out", f"out={out}"]) == 2
    with pytest.raises(SystemExit):  # a plain input given twice is a mistake
        main(stage, ["--params", "{}", "--in", f"one={one}", "--in", f"one={one}", "--out", f"out={out}"])


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(tmp_path, capsys):
    import errno

    def body(ctx):
        ctx.outputs["a"].write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.outputs["a"]))

    assert main(make_stage(body), args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"tunepipe demo: error: cannot write {tmp_path / 'a.txt'}: No space left on device" in err
    assert "Traceback" not in err and ".partial" not in err
    assert not list(tmp_path.glob("*.txt.partial")) and not list(tmp_path.glob(".*partial")) and not (tmp_path / "a.txt").exists()


def test_an_unwritable_results_folder_is_reported_without_a_traceback(tmp_path):
    # A real OSError, whoever runs the test (root ignores permissions): results/ is a file, not a folder.
    (tmp_path / "in.txt").write_text("x")
    (tmp_path / "results").write_text("not a folder")
    script = (
        "from tunepipe.stages.harness import Stage, main\n"
        "stage = Stage(name='demo', summary='demo', inputs={'src': 'x'}, outputs={'a': 'y'}, run=lambda ctx: ctx.outputs['a'].write_text('ok'))\n"
        f"raise SystemExit(main(stage, ['--params', '{{}}', '--in', 'src={tmp_path / 'in.txt'}', '--out', 'a={tmp_path / 'results' / 'a.txt'}']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert f"tunepipe demo: error: cannot write into {tmp_path / 'results'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "results").read_text() == "not a folder"


def test_the_stage_sees_the_final_names_of_its_outputs(tmp_path):
    seen = {}

    def body(ctx):
        seen.update(ctx.final)
        for path in ctx.outputs.values():
            path.write_text("x")

    assert main(make_stage(body), args(tmp_path)) == 0
    assert seen == {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}


def test_counts_line_lists_few_labels_and_summarises_many():
    from tunepipe.stages.harness import counts_line

    assert counts_line({"fresh": 3, "rotten": 2}) == "{'fresh': 3, 'rotten': 2}"
    many = {f"L{i}": i for i in range(1, 633)}
    line = counts_line(many)
    assert line.startswith("632 labels; largest {'L632': 632,") and "smallest {" in line and "'L1': 1}" in line and len(line) < 300
