"""The registry: built-ins, entry-point plugins, import paths, and helpful errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import unlearn.registry
from unlearn.errors import UserError
from unlearn.harness import choose_method
from unlearn.methods import METHODS, resolve_method


def test_builtin_methods_are_registered():
    assert {"retrain", "finetune", "grad-ascent", "random-label"} <= set(METHODS.names())


def test_unknown_method_suggests_the_closest_names():
    with pytest.raises(UserError, match="did you mean finetune"):
        resolve_method("finetun")


def test_import_path_methods_load():
    cls = resolve_method("plugin_methods:Spy")
    assert cls.__name__ == "Spy" and METHODS.origin("plugin_methods:Spy") == "import-path"
    assert "plugin_methods:Spy" not in METHODS.names()  # resolved once, still not a listed name


def test_bad_import_paths_are_user_errors():
    with pytest.raises(UserError, match="cannot import"):
        resolve_method("no_such_pkg.mod:X")
    with pytest.raises(UserError, match="has no attribute"):
        resolve_method("plugin_methods:Missing")
    with pytest.raises(UserError, match="not a subclass"):
        resolve_method("plugin_methods:NotAMethod")


def test_entry_point_plugins_are_found(monkeypatch):
    ep = EntryPoint(name="spy-plugin", value="plugin_methods:ForgetOnlySpy", group="unlearn.methods")
    monkeypatch.setattr(unlearn.registry, "entry_points", lambda group: [ep] if group == "unlearn.methods" else [])
    assert "spy-plugin" in METHODS.names() and "spy-plugin" not in METHODS.builtin_names()
    assert resolve_method("spy-plugin").__name__ == "ForgetOnlySpy"
    assert METHODS.origin("spy-plugin").startswith("entry-point")


def test_hyperparameters_are_validated(digits_spec):
    choice = choose_method(digits_spec, "finetune", {"lr": "0.5"})
    assert choice.hparams.lr == 0.5 and choice.hparams.epochs == digits_spec.hparams["finetune"]["epochs"]
    with pytest.raises(UserError, match="did you mean lr"):
        choose_method(digits_spec, "finetune", {"lrr": 0.1})
    with pytest.raises(UserError, match="finetune.epochs"):
        choose_method(digits_spec, "finetune", {"epochs": "many"})


def test_reference_defaults_apply_where_the_benchmark_has_no_tuned_value(digits_spec):
    untuned = digits_spec.model_copy(update={"hparams": {k: v for k, v in digits_spec.hparams.items() if k != "random-label"}})
    rl = choose_method(untuned, "random-label").hparams
    assert (rl.epochs, rl.lr, rl.batch_size, rl.momentum, rl.weight_decay) == (10, 0.013, 256, 0.9, 5e-4)
    salun = choose_method(digits_spec, "salun").hparams  # tuned lr and ratio, reference values for the rest
    assert (salun.lr, salun.ratio) == tuple(digits_spec.hparams["salun"][k] for k in ("lr", "ratio"))
    assert (salun.epochs, salun.batch_size, salun.momentum, salun.weight_decay) == (10, 256, 0.9, 5e-4)
