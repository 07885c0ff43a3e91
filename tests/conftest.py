import atexit
import os
import shutil
import sys
import tempfile

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# The suite compiles into a cache folder of its own (removed at exit), never into the
# user's ~/.cache/fusegrad; tests that need a specific folder set FUSEGRAD_CACHE_DIR.
if "FUSEGRAD_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="fusegrad-test-cache-")
    os.environ["FUSEGRAD_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("FUSEGRAD_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")
