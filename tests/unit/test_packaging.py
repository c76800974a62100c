import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_does_not_shadow_the_standard_library() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    probe = "import operator, sysconfig; operator.add; print(operator.__file__ or '')"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert not out.startswith(str(ROOT)), out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "downtime-operator"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "run" in result.stdout and "migrate" in result.stdout
