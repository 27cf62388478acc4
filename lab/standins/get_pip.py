"""Stand-in for get-pip.py (the pip bootstrap ansible-test downloads; that host cannot be reached here).

ansible-test creates each sanity venv without pip and runs get-pip.py in it with pip's install
arguments (ansible_test/_util/target/setup/requirements.py: bootstrap(), run through
quiet_pip.py as a module named get_pip_<version>, taken from ~/.ansible/test/cache). Like the real
script, this installs the packages it is given (pip==X, and setuptools==Y wheel==Z for older
ansible-test) into the running interpreter's environment: pip from the interpreter's own
ensurepip, then the given versions from the package index. get-pip.py's own switches
--no-setuptools and --no-wheel are dropped (pip install has neither; ensurepip brings no wheel).
tests/galaxy/venvs.py puts it in the cache when the real one is not there.
"""

import subprocess
import sys

# A subprocess each: ensurepip sets PIP_CONFIG_FILE=/dev/null in its own process, and pip needs
# the machine's configuration (its index and CA bundle) for the second step.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
