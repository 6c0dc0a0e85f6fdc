"""The build step of pyproject.toml: CMake on this tree, building only the module target
(bertune_python -> bertune/_native*.so) over the same folder libraries as the command line.

BERTUNE_CMAKE_ARGS adds configure arguments (e.g. -DBERTUNE_CUDA=OFF); the build tree is
build-python/ beside this file, so a second install reuses what the first compiled.
"""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.path.join(ROOT, "build-python")
        configure = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", "-DBERTUNE_PYTHON=ON",
                     "-DBERTUNE_BUILD_TESTS=OFF", "-DBERTUNE_BUILD_BENCH=OFF",
                     f"-DPython3_EXECUTABLE={sys.executable}"]
        configure += shlex.split(os.environ.get("BERTUNE_CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", build_dir, "--target", "bertune_python", "-j", jobs], check=True)
        built = glob.glob(os.path.join(build_dir, "python", "bertune", "_native*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one built module in {build_dir}/python/bertune, found {built}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self.copy_file(built[0], target)


setup(ext_modules=[Extension("bertune._native", sources=[])], cmdclass={"build_ext": CMakeBuild})
