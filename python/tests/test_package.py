"""The package itself: its import sets libgomp's wait policy as the command line does."""
import os
import subprocess
import sys

from conftest import REPO

SNIPPET = "import bertune, os; print(os.environ.get('OMP_WAIT_POLICY'))"


def run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True,
                          check=True, cwd=REPO).stdout.strip()


def test_import_chooses_the_passive_wait_policy_unless_the_user_did():
    assert run({}) == "passive"
    assert run({"OMP_WAIT_POLICY": "active"}) == "active"
    assert run({"GOMP_SPINCOUNT": "1000"}) == "None"
