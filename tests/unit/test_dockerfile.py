"""Invariants of the container image, checked on the Dockerfile's text.

These tests parse the Dockerfile and assert what it promises to users (pinned bases, wheel-only
runtime, numeric non-root user, safe Python flags, entrypoint = the console script), in a
second; tests/e2e/test_image.py builds it with podman on a stand-in base and runs it. The last
test builds the wheel the builder stage builds, from exactly the files the builder stage copies,
and inspects it. That one takes about 5 s and needs PyPI for the build backend (pip's build
isolation installs ``setuptools>=75`` and ``wheel`` from ``[build-system] requires``, as
``docker build`` would), which the development machines and CI reach.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONSOLE_SCRIPT = "downtime-operator"
MIGRATIONS = ROOT / "operator" / "downtime_operator" / "adapters" / "postgres" / "migrations"
# name[:tag][@sha256:digest]; the tag must be an exact version: 3.11.13, 3.11.13-slim-bookworm.
IMAGE_RE = re.compile(
    r"^(?P<name>[a-z0-9._/-]+)(?::(?P<tag>[A-Za-z0-9._-]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
EXACT_VERSION_TAG = re.compile(r"^\d+\.\d+\.\d+(-[a-z0-9.-]+)?$")
# What .dockerignore keeps out of the build context, for the wheel build below.
IGNORED = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")


@dataclass
class Instruction:
    keyword: str  # upper-case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined

    def words(self) -> list[str]:
        return shlex.split(self.args)

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT; fails on the shell form."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must use the exec (JSON) form"
        return [str(v) for v in value]


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            words = instruction.words()
            if len(words) == 2 and "=" not in words[0]:  # legacy `ENV KEY value`
                values[words[0]] = words[1]
                continue
            for word in words:
                key, sep, value = word.partition("=")
                assert sep, f"ENV without '=': {instruction.args!r}"
                values[key] = value
        return values


def logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (and parser directives); blank lines inside a RUN are allowed
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return lines


def parse(text: str) -> list[Stage]:
    """The stages, with global ``ARG`` defaults substituted into ``FROM`` (as a build without
    ``--build-arg`` does: that is the image users get)."""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "ARG" and not stages:
            name, sep, default = instruction.args.partition("=")
            assert sep, f"a global ARG used in FROM needs a default: {line!r}"
            global_args[name] = default
            continue
        if instruction.keyword == "FROM":
            words = [
                re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], w)
                for w in instruction.words()
                if not w.startswith("--")
            ]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"unexpected FROM: {line!r}"
            stages.append(Stage(image=words[0], name=name))
            continue
        assert stages, f"instruction before the first FROM: {line!r}"
        stages[-1].instructions.append(instruction)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    parsed = parse(DOCKERFILE.read_text())
    assert len(parsed) >= 2, "expected a multi-stage build (builder + runtime)"
    return parsed


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    builders = [s for s in stages[:-1] if any(_is_pip_wheel(r) for r in s.all("RUN"))]
    assert len(builders) == 1, "expected exactly one stage that runs `pip wheel`"
    assert builders[0].name, "the builder stage needs a name (FROM ... AS builder)"
    return builders[0]


def _is_pip_wheel(run: Instruction) -> bool:
    return re.search(r"\bpip\s+wheel\b", run.args) is not None


def _copy_options(copy: Instruction) -> tuple[dict[str, str], list[str]]:
    """``COPY --from=x --chown=y a b dest`` -> ({"from": "x", "chown": "y"}, ["a", "b", "dest"])."""
    options: dict[str, str] = {}
    paths: list[str] = []
    for word in copy.words():
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            options[key] = value
        else:
            paths.append(word)
    assert len(paths) >= 2, f"COPY needs a source and a destination: {copy.args!r}"
    return options, paths


def test_every_base_image_is_pinned_to_an_exact_version(stages: list[Stage]) -> None:
    stage_names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.image in stage_names:
            continue  # FROM an earlier stage
        match = IMAGE_RE.match(stage.image)
        assert match, f"unparsable image reference {stage.image!r}"
        tag = match["tag"]
        assert tag, f"{stage.image}: no tag (means latest)"
        assert tag != "latest", f"{stage.image}: latest is not a pin"
        assert EXACT_VERSION_TAG.match(tag), f"{stage.image}: tag is not an exact x.y.z version"


def test_builder_and_runtime_share_the_same_pinned_python_base(
    builder: Stage, final: Stage
) -> None:
    assert final is not builder
    assert builder.image == final.image
    assert final.image.startswith("python:3.11."), final.image


def test_builder_builds_the_wheel_without_dependencies(builder: Stage) -> None:
    [run] = [r for r in builder.all("RUN") if _is_pip_wheel(r)]
    words = run.words()
    assert "--no-deps" in words
    assert "-w" in words or any(w.startswith("--wheel-dir") for w in words)


def test_final_stage_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets no USER (it would run as root)"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit(), f"USER {users[-1].args!r}: use a numeric uid (runAsNonRoot needs it)"
    assert int(user) != 0, "USER 0 is root"
    if group:
        assert group.isdigit() and int(group) != 0, f"USER {users[-1].args!r}: group"


def test_runtime_installs_only_the_wheel(final: Stage) -> None:
    installs = [r for r in final.all("RUN") if re.search(r"\bpip\s+install\b", r.args)]
    assert installs, "the final stage installs nothing with pip"
    for run in installs:
        args = [w for w in run.words() if not w.startswith("-")]
        targets = args[args.index("install") + 1 :]
        targets = targets[: targets.index("&&")] if "&&" in targets else targets
        assert targets, f"pip install without targets: {run.args!r}"
        assert all(t.endswith(".whl") for t in targets), f"installs more than the wheel: {targets}"
        assert "--no-cache-dir" in run.words()
        assert "-e" not in run.words() and "--editable" not in run.words()


def test_runtime_copies_nothing_but_the_built_wheel(builder: Stage, final: Stage) -> None:
    assert not final.all("ADD"), "ADD in the final stage (use COPY --from=builder of the wheel)"
    [wheel_run] = [r for r in builder.all("RUN") if _is_pip_wheel(r)]
    words = wheel_run.words()
    wheel_dir = PurePosixPath(words[words.index("-w") + 1]) if "-w" in words else None
    for copy in final.all("COPY"):
        options, paths = _copy_options(copy)
        assert options.get("from") == builder.name, f"COPY from the build context: {copy.args!r}"
        for source in paths[:-1]:
            path = PurePosixPath(source)
            assert path.suffix == ".whl" or path == wheel_dir, f"copies {source}, not the wheel"


def test_python_runs_safely_inside_the_container(final: Stage) -> None:
    env = final.env()
    assert env.get("PYTHONSAFEPATH") == "1"  # the working directory is never on sys.path
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"


def test_entrypoint_is_the_console_script_and_cmd_is_run(final: Stage) -> None:
    [entrypoint] = final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == [CONSOLE_SCRIPT]
    [cmd] = final.all("CMD")
    assert cmd.exec_form() == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert CONSOLE_SCRIPT in scripts, "[project.scripts] has no downtime-operator"


def test_admin_port_is_exposed(final: Stage) -> None:
    exposed = {w.split("/")[0] for e in final.all("EXPOSE") for w in e.words()}
    assert "8080" in exposed


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"):
        assert required in patterns, f".dockerignore does not exclude {required}"
    assert any("__pycache__" in p for p in patterns)
    for needed in ("pyproject.toml", "operator"):
        assert needed not in patterns and f"!{needed}" not in patterns


def test_wheel_built_from_the_builder_context_ships_migrations_and_no_operator_package(
    builder: Stage, tmp_path: Path
) -> None:
    """~5 s: ``pip wheel`` over exactly what the builder stage COPYs (build deps from PyPI)."""
    context = tmp_path / "src"
    context.mkdir()
    for copy in builder.all("COPY"):
        options, paths = _copy_options(copy)
        assert "from" not in options
        *sources, dest = paths
        assert not dest.startswith("/"), f"expected a destination under WORKDIR: {copy.args!r}"
        for source in sources:
            origin = ROOT / source
            target = context / dest
            if origin.is_dir():  # COPY dir/ dest/ copies the directory's contents into dest
                shutil.copytree(origin, target, dirs_exist_ok=True, ignore=IGNORED)
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
            else:
                shutil.copy2(origin, target)
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = list(dist.glob("downtime_operator-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    shipped_sql = {n for n in names if n.endswith(".sql")}
    expected_sql = {
        f"downtime_operator/adapters/postgres/migrations/{p.name}" for p in MIGRATIONS.glob("*.sql")
    }
    assert expected_sql, "no migrations in the source tree?"
    assert shipped_sql == expected_sql
    assert "downtime_operator/py.typed" in names
    assert "downtime_operator/__main__.py" in names
    assert not any(n.startswith("operator/") for n in names), "an `operator` package shadows stdlib"
    assert not any(n.startswith("tests/") for n in names)
    assert f"{CONSOLE_SCRIPT} = downtime_operator.__main__:main" in scripts
