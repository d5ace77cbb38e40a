"""`_target_` params build only optimizers and learning-rate schedules, never any importable callable."""

from __future__ import annotations

import pytest

from tunepipe.config import validate_params
from tunepipe.errors import ParamsError
from tunepipe.sweep import validate_run_params
from tunepipe.targets import check_target, resolve_target


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval", "torch.optim._functional.adam",
                                    "torch.optim.lr_scheduler", "torch.optimizer.SGD", "torch.optim.lr_scheduler.LambdaLR.__init__"])
def test_an_optimizer_outside_the_allowed_modules_is_a_params_error_naming_the_key(target):
    with pytest.raises(ParamsError) as info:
        validate_params({"train": {"optimizer": {"_target_": target}}})
    message = str(info.value)
    assert f"train.optimizer._target_: {target!r} is not allowed" in message
    assert "torch.optim.AdamW" in message and "TUNEPIPE_TARGET_MODULES=my_package.optim" in message


def test_a_scheduler_outside_the_allowed_modules_is_refused_too():
    with pytest.raises(ParamsError, match=r"train.scheduler._target_: 'os.system' is not allowed"):
        validate_params({"train": {"scheduler": {"_target_": "os.system"}}})
    assert validate_params({"train": {"scheduler": None}})["train"]["scheduler"] is None


def test_a_nested_target_in_the_keyword_arguments_is_refused():
    # Hydra's instantiate builds nested `_target_` objects as well.
    with pytest.raises(ParamsError, match=r"train.optimizer.betas: nested `_target_`"):
        validate_params({"train": {"optimizer": {"_target_": "torch.optim.AdamW", "betas": {"_target_": "os.system"}}}})
    with pytest.raises(ParamsError, match=r"train.scheduler.steps.1: nested `_target_`"):
        validate_params({"train": {"scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "steps": [1, {"_target_": "os.system"}]}}})


def test_the_same_check_holds_for_sweeps_and_dvc_exp_run_overrides():
    with pytest.raises(ParamsError) as info:
        validate_run_params({"sweep": {"method": "grid", "parameters": {"train.optimizer._target_": ["torch.optim.SGD", "os.system"]}}})
    assert '{"train.optimizer._target_": "os.system"}' in str(info.value)
    assert "train.optimizer._target_: 'os.system' is not allowed" in str(info.value)
    # `dvc exp run -S train.scheduler._target_=...` edits params.yaml, which is validated like any params
    with pytest.raises(ParamsError, match="train.scheduler._target_"):
        validate_params({"train": {"scheduler": {"_target_": "subprocess.Popen"}}})


@pytest.mark.parametrize("target", ["torch.optim.AdamW", "torch.optim.SGD", "torch.optim.lr_scheduler.OneCycleLR",
                                    "tunepipe.models.schedules.linear_warmup_decay", "tunepipe.models.schedules.cosine_warmup"])
def test_optimizers_and_schedules_resolve_to_what_they_name(target):
    obj = resolve_target("train.optimizer._target_", target)
    assert callable(obj) and target.endswith(obj.__name__)


def test_a_name_only_imported_into_an_allowed_module_is_refused():
    # torch.optim.lr_scheduler imports functools.partial: the string passes, the object does not.
    check_target("train.scheduler._target_", "torch.optim.lr_scheduler.partial")
    with pytest.raises(ParamsError, match=r"'torch.optim.lr_scheduler.partial' is not allowed \(it is defined in 'functools'\)"):
        resolve_target("train.scheduler._target_", "torch.optim.lr_scheduler.partial")


def test_a_user_allows_their_own_module_with_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "my_optim.py").write_text("def lion(params, lr=1e-4):\n    return ('lion', lr)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ParamsError):
        validate_params({"train": {"optimizer": {"_target_": "my_optim.lion"}}})
    monkeypatch.setenv("TUNEPIPE_TARGET_MODULES", " my_optim , other.pkg")
    assert validate_params({"train": {"optimizer": {"_target_": "my_optim.lion"}}})["train"]["optimizer"]["_target_"] == "my_optim.lion"
    assert resolve_target("train.optimizer._target_", "my_optim.lion")(None) == ("lion", 1e-4)
    with pytest.raises(ParamsError, match="cannot be imported"):
        resolve_target("train.optimizer._target_", "my_optim.missing")
