"""What every entry point shares: bad input, Hydra's own reports included, ends in one line.

A script runs its `@hydra.main` function as `run(main)` (Hydra's errors while composing the
config) and does its work inside `with user_errors():` (errors once the job runs; outside the
job Hydra would first print `Error executing job with overrides: ...`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import (
    HydraException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from seq2seq.allocator import setup_memory
from seq2seq.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"


@contextmanager
def _hydra() -> Iterator[None]:
    """Inside a running `@hydra.main` app its Hydra; elsewhere (tests, notebooks) our own."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield


def compose_config(name: str, overrides: list[str], check_numbers: bool = False) -> DictConfig:
    """`conf/<name>.yaml` with these overrides, as its script would compose it;
    `check_numbers`: refuse `key=text` where the config has a number, as the scripts do
    (`check_number_overrides`)."""
    with _hydra():
        cfg = compose(name, overrides=overrides)
        errors = number_override_errors(name, overrides, cfg) if check_numbers else []
    if errors:
        raise UserError("; ".join(errors))
    return cfg


def model_config(cfg: DictConfig, src_vocab_size: int, tgt_vocab_size: int) -> dict:
    """The model's `_target_` call with the sizes that come from the data filled in."""
    config = OmegaConf.to_container(cfg.model, resolve=True)
    config.update(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
    return config


def run(main: Callable[[], object]) -> None:
    """Call a `@hydra.main` function; an unknown group option, a key that does not exist or an
    override that does not parse exits with `error: <one line>` (status 1). Sets up the
    memory settings first (`seq2seq.allocator`)."""
    # Hydra prints its own multi-line report (and its search path) unless told to raise.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    setup_memory()
    try:
        main()
    except (HydraException, *MISSING) as e:
        _exit_or_raise(e)


MISSING = (MissingMandatoryValue, InterpolationToMissingValueError)  # a `???` not given


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input (a `UserError`, or a Hydra error about the input: `one_line`) exits with
    `error: <one line>` (status 1)."""
    try:
        yield
    except (UserError, HydraException, *MISSING) as e:
        _exit_or_raise(e)


def _exit_or_raise(e: Exception) -> None:
    message = one_line(e)
    if message is None:
        raise e
    sys.exit(f"error: {message}")


def one_line(e: BaseException) -> str | None:
    """The message for a person, or None where `e` is not about the input (a bug: traceback)."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, MISSING):
        # a `???` value the command line did not give (or one an interpolation reads)
        named = re.search(r"Missing mandatory value: ([\w.]+)", str(e))
        key = named.group(1) if named else e.full_key
        return f"{key}: required, and not given; add {key}=..."
    if isinstance(e, InstantiationException):  # a UserError raised by a `_target_`'s __init__
        if isinstance(e.__cause__, UserError):
            return str(e.__cause__)
        target = re.search(r"target '([^']+)'", str(e))
        if isinstance(e.__cause__, ValueError) and target:  # a value its code refuses
            cause = " ".join(str(e.__cause__).split())
            return f"cannot build {target.group(1)}: {cause} (its settings: --cfg job)"
        return None
    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}={option}: no such option; {group} is one of {', '.join(e.options)}"
    if isinstance(e, OverrideParseException):
        return f"{e.override}: {' '.join(str(e).split())}"
    if isinstance(e, HydraException):  # e.g. an override naming no key
        lines = str(e).split("\nConfig search path:")[0].splitlines()
        return " ".join(line.strip() for line in lines if line.strip())
    return None


# text that means yes or no to a person, but true to Python (a non-empty string)
BOOLEAN_WORDS = frozenset({"yes", "no", "y", "n", "on", "off", "t", "f", "true", "false"})


def number_type_errors(cfg: DictConfig, defaults: DictConfig, keys: list[str]) -> list[str]:
    """The `keys` that `cfg` sets to text where `defaults` (the same config without those
    overrides) has a number, or to a yes/no word or a number where it has a boolean (Python
    would take `data.reverse_source=no` as true; `compile=eager` and Lightning's
    `trainer.deterministic=warn` are values of their own), each as `key=value: expected ...`."""
    errors = []
    for key in keys:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            default = OmegaConf.select(defaults, key, throw_on_missing=False)
        except Exception:  # an interpolation that does not resolve: reported where it is used
            continue
        if isinstance(default, bool):  # a yes/no in words; other text may be meant
            words = isinstance(value, str) and value.lower() in BOOLEAN_WORDS  # (compile=eager)
            if words or (isinstance(value, int) and not isinstance(value, bool)):
                errors.append(f"{key}={value}: expected true or false (the default is "
                              f"{str(default).lower()})")  # fmt: skip
            continue
        # "auto" is Lightning's word for a count it picks (trainer.devices=auto)
        if not isinstance(value, str) or value == "auto":
            continue
        if isinstance(default, int):
            errors.append(f"{key}={value}: expected an integer (the default is {default})")
        elif isinstance(default, float):
            errors.append(f"{key}={value}: expected a number (the default is {default})")
    return errors


def check_number_overrides(cfg: DictConfig) -> None:
    """Refuse `key=text` where the config has a number (`data.batch_size=abc`), naming the key.

    The YAML has no schema, so Hydra takes any value; without this check such a value fails
    deep inside training with a traceback. The config is composed again with the command
    line's group choices only (`model=transformer`) to know each key's default.
    """
    hydra_cfg = HydraConfig.get()
    errors = number_override_errors(hydra_cfg.job.config_name, list(hydra_cfg.overrides.task), cfg)
    if errors:
        raise UserError("; ".join(errors))


def number_override_errors(name: str, overrides: list[str], cfg: DictConfig) -> list[str]:
    """`number_type_errors` of the keys that `overrides` set in `cfg` (config `name` composed
    with them), against `name` composed with their group choices only; inside a Hydra."""
    loader = GlobalHydra.instance().config_loader()
    groups, keys = [], []
    for o in OverridesParser.create().parse_overrides(overrides):
        if loader.get_group_options(o.key_or_group):
            groups.append(o.input_line)
        elif not o.is_delete() and o.key_or_group not in keys:  # a key given twice: one error
            keys.append(o.key_or_group)
    if not keys:
        return []
    try:
        defaults = compose(name, overrides=groups)
    except Exception:  # a check, not a second way to fail: Hydra composed this config already
        return []
    return number_type_errors(cfg, defaults, keys)
