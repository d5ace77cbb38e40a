"""The report in a real headless Chromium: offline, no console errors, no requests, every figure drawn, text safe.

The end-to-end runs of both presets (tests/test_workflow.py) check their real reports the same way.
"""

from __future__ import annotations

import copy

import pytest

from tests.report.browser import assert_renders_cleanly, open_report
from tests.report.test_report import INPUTS, SECTIONS, render

pytestmark = pytest.mark.browser

INJECTED = "<script>window.__tunepipe_injected = true</script>"


def write(tmp_path, html: str):
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_the_report_opens_offline_with_every_figure_drawn(tmp_path):
    view = open_report(write(tmp_path, render(tmp_path)))

    assert_renders_cleanly(view, min_figures=3)
    assert view.title == "tunepipe report"
    for number, name in enumerate(SECTIONS, start=1):
        assert f"{number}. {name}" in view.text
    assert "78.5%" in view.text  # the headline accuracy is on screen, not only in the markup


def test_a_narrow_laptop_window_keeps_figures_inside_the_page(tmp_path):
    view = open_report(write(tmp_path, render(tmp_path)), width=800)

    assert_renders_cleanly(view, min_figures=3)
    assert all(figure.width <= 800 for figure in view.figures), [(f.label, f.width) for f in view.figures]


def test_dataset_text_carrying_script_tags_is_shown_as_text(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["clean"]["examples"]["too_short"] = [INJECTED]
    inputs["augment"]["examples"] = [{"original": INJECTED, "augmented": "<img src=x onerror=\"window.__tunepipe_injected = true\">"}]
    inputs["confusion"]["labels"] = [INJECTED, "rotten"]

    view = open_report(write(tmp_path, render(tmp_path, inputs)))

    assert not view.scripts_ran
    assert INJECTED in view.text
    assert '<img src=x onerror="window.__tunepipe_injected = true">' in view.text
    assert_renders_cleanly(view, min_figures=3)


def test_image_examples_are_drawn_as_inline_thumbnails(tmp_path):
    from PIL import Image, ImageDraw

    paths = []
    for index in range(2):
        image = Image.new("L", (28, 28), 30)
        ImageDraw.Draw(image).rectangle((6 + index, 6, 20, 22), fill=220)
        paths.append(tmp_path / f"item{index}.png")
        image.save(paths[-1])
    inputs = copy.deepcopy(INPUTS)
    inputs["augment"]["examples"] = [{"original": str(paths[0]), "augmented": str(paths[1])}]
    params = {"seed": 42, "data": {"source": "fashion_mnist", "modality": "image", "labels": None},
              "export": {"opset": 17, "max_abs_logit_diff": 1.0e-3}, "report": {"title": "images", "examples": 2}}

    view = open_report(write(tmp_path, render(tmp_path, inputs, params=params)))

    thumbnails = [figure for figure in view.figures if figure.tag == "img"]
    assert len(thumbnails) == 2 and all(figure.loaded and figure.colours > 1 for figure in thumbnails)
    assert_renders_cleanly(view, min_figures=5)


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_multi_label_and_regression_reports_open_with_their_figures_drawn(tmp_path, task):
    from tests.report.test_tasks import MULTI, MULTI_HISTORY, MULTI_PARAMS, REGRESSION, REGRESSION_HISTORY, REGRESSION_PARAMS, render_task

    params, inputs, history, headline = {"multi_label": (MULTI_PARAMS, MULTI, MULTI_HISTORY, "Test micro F1"),
                                         "regression": (REGRESSION_PARAMS, REGRESSION, REGRESSION_HISTORY, "Test MAE")}[task]
    view = open_report(write(tmp_path, render_task(tmp_path, params, inputs, history)))

    # training curves, the task's data figure and its evaluation figures (per-label F1; scatter and residuals)
    assert_renders_cleanly(view, min_figures=3)
    assert headline in view.text and not view.scripts_ran
    captions = [figure.label for figure in view.figures]  # a figure is known by its caption
    expected = (("Rows carrying each label", "Test F1 of each label") if task == "multi_label" else
                ("Histogram of the test split", "Each test row's predicted", "Each test row's error"))
    assert all(any(caption.startswith(start) for caption in captions) for start in expected), captions
