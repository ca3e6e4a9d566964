"""The jinja2 environment: templates found in a checkout and inside the built wheel, strict
undefined, and YAML scalars that read back as the same string."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jinja2
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from kubeforge.render.env import environment, template_root, yaml_scalar

REPO = Path(__file__).resolve().parents[2]


def test_every_template_in_the_repository_compiles() -> None:
    env = environment()
    names = env.list_templates()
    on_disk = sorted(str(p.relative_to(REPO / "templates")) for p in (REPO / "templates").rglob("*.j2"))
    assert names == on_disk and len(names) > 15
    for name in names:
        env.get_template(name)


def test_a_missing_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(jinja2.UndefinedError):
        environment().get_template("packages/kubernetes-pin.j2").render()


def test_the_environment_is_built_once_and_keeps_trailing_newlines() -> None:
    assert environment() is environment()
    out = environment().get_template("packages/kubernetes-pin.j2").render(version="1.34.2")
    assert out.endswith("Pin-Priority: 1001\n")


def test_a_source_checkout_reads_the_top_level_templates_directory() -> None:
    root = template_root()
    assert (root / "kubeadm" / "init.yaml.j2").is_file()


_yaml11 = yaml.SafeLoader
_yaml12 = YAML(typ="safe", pure=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.sampled_from(["yes", "no", "on", "1e3", "0x1f", "10:20", "~", "null",
                                                         "2024-01-02", ".inf", "1_000", "-", "a: b", "#x", "v1.34.2",
                                                         "0\n", "v1.34.2\n"])))
def test_yaml_scalars_read_back_as_the_same_string_in_yaml_1_1_and_1_2(text: str) -> None:
    document = f"key: {yaml_scalar(text)}\n"
    assert yaml.load(document, Loader=_yaml11) == {"key": text}
    assert _yaml12.load(document) == {"key": text}


@pytest.mark.slow
def test_the_built_wheel_ships_the_templates_and_renders_from_them(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = out.glob("kubeforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "templates").rglob("*.j2"):
        assert f"kubeforge/templates/{template.relative_to(REPO / 'templates')}" in names
    assert "kubeforge/model/versions.yaml" in names  # the version facts, read through importlib.resources
    # Import kubeforge from the zipped wheel itself, so templates come through importlib.resources.
    probe = (
        "import kubeforge, kubeforge.render.env as e;"
        "assert '.whl' in kubeforge.__file__, kubeforge.__file__;"
        "print(e.render_template('packages/kubernetes-pin.j2', version='1.34.2').decode());"
        "import kubeforge.model.versions as v; print('supported', *v.supported_kube_minors())"
    )
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Pin: version 1.34.2-*" in run.stdout
    assert "supported 1.35 1.36 1.37" in run.stdout
