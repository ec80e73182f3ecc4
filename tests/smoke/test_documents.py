"""What a data scientist expects of a notebook image, as jupyter/docker-stacks' own image tests check it:
every package of scipy- and tensorflow-notebook imports, notebooks export to HTML, PDF, LaTeX, RST and
Markdown, matplotlib renders with usetex and finds its prebuilt font cache and common fonts, animations
save as .mp4, Cython and a source-only package build, the JupyterLab extensions are enabled, and pip works.
tests/unit/data/docker-stacks-applicability.toml maps each of their applicable tests to a test here.

Like test_toolkit, one container per cell prints one JSON report; each check runs in its own process, so
one failure still leaves the others' results. Nothing needs the network: the source-only package is an
sdist built inside the container from files the script writes.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from python_on_whales import docker

pytestmark = pytest.mark.docker

APPLICABILITY = Path(__file__).resolve().parents[1] / "unit" / "data" / "docker-stacks-applicability.toml"
# The import names of docker-stacks' scipy-notebook and tensorflow-notebook packages (their test_packages).
IMPORTS = tuple(tomllib.loads(APPLICABILITY.read_text())["imports"]["modules"])
EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "@jupyterlab/git", "jupyter-matplotlib")

REPORT = r"""
import json, os, subprocess, sys, textwrap
from pathlib import Path

imports, = json.loads(sys.argv[1])
IMPORT_ALL = '''
import importlib, sys
missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f"{name}: {exc!r}")
print("missing:", missing)
sys.exit(1 if missing else 0)
'''
work = Path("/tmp/documents")
work.mkdir()

def run(command, cwd=work, shell=False):
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, shell=shell)
    return {"code": done.returncode, "output": (done.stdout + done.stderr)[-4000:]}

def python(code):
    return run([sys.executable, "-c", textwrap.dedent(code)])

import nbformat
nb = nbformat.v4.new_notebook()
nb.cells = [
    nbformat.v4.new_markdown_cell("# Export\nMaths: $e^{i\\pi} + 1 = 0$ and\n$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$"),
    nbformat.v4.new_code_cell("import numpy as np\nprint(np.arange(3).sum())"),
]
nbformat.write(nb, work / "export.ipynb")
exports = {}
for fmt, suffix in (("html", "html"), ("pdf", "pdf"), ("latex", "tex"), ("rst", "rst"), ("markdown", "md")):
    result = run(["jupyter", "nbconvert", "--execute", "--to", fmt, "--output", f"out-{fmt}", "export.ipynb"])
    out = work / f"out-{fmt}.{suffix}"
    result["size"] = out.stat().st_size if out.exists() else 0
    exports[fmt] = result

(work / "hello.pyx").write_text("def hello(int n):\n    cdef int i, s = 0\n    for i in range(n):\n        s += i\n    return s\n")
(work / "setup.py").write_text("from setuptools import setup\nfrom Cython.Build import cythonize\nsetup(ext_modules=cythonize('hello.pyx'))\n")
sdist = work / "srconly"
(sdist / "srconly").mkdir(parents=True)
(sdist / "README.md").write_text("A package that ships only its C source.\n")
(sdist / "srconly" / "__init__.py").write_text("from ._speed import answer\n")
(sdist / "srconly" / "_speed.c").write_text(
    '#include <Python.h>\n'
    'static PyObject *answer(PyObject *s, PyObject *a) { return PyLong_FromLong(42); }\n'
    'static PyMethodDef m[] = {{"answer", answer, METH_NOARGS, ""}, {0}};\n'
    'static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "_speed", 0, -1, m};\n'
    'PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&d); }\n')
(sdist / "setup.py").write_text(
    "from setuptools import setup, Extension\n"
    "setup(name='srconly', version='1.0', packages=['srconly'], ext_modules=[Extension('srconly._speed', ['srconly/_speed.c'])])\n")

print(json.dumps({
    "imports": run([sys.executable, "-c", IMPORT_ALL, *imports]),
    "exports": exports,
    "pandoc": run(["pandoc", "--version"]),
    "usetex": python('''
        import warnings; warnings.simplefilter("error")
        import matplotlib; matplotlib.use("Agg"); matplotlib.rcParams["text.usetex"] = True
        matplotlib.rcParams["font.family"] = "serif"
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(); ax.plot([1, 2], [1, 2], label=r"$\\alpha^2$ a label"); ax.legend()
        fig.savefig("/tmp/documents/usetex.png"); fig.savefig("/tmp/documents/usetex.pdf")
        print("usetex ok")
    '''),
    "fonts": python('''
        import logging, pathlib
        records = []
        logging.getLogger("matplotlib").addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r.getMessage())})())
        cache = sorted((pathlib.Path.home() / ".cache" / "matplotlib").glob("fontlist-*.json"))
        from matplotlib import font_manager
        found = [font_manager.findfont(name, fallback_to_default=False) for name in ("Liberation Sans", "Liberation Serif", "DejaVu Sans")]
        assert cache, "no prebuilt font cache in ~/.cache/matplotlib"
        assert not records, records  # no "building the font cache", no findfont fallback, no temporary config dir
        print("fonts ok", [c.name for c in cache], found)
    '''),
    "animation": python('''
        import matplotlib; matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.animation import FuncAnimation
        fig, ax = plt.subplots(); line, = ax.plot([], [])
        anim = FuncAnimation(fig, lambda i: line.set_data(range(i), range(i)), frames=5)
        anim.save("/tmp/documents/anim.mp4", writer="ffmpeg", fps=5)
        import os; assert os.path.getsize("/tmp/documents/anim.mp4") > 0
        print("mp4 ok")
    '''),
    "cython": run(f"{sys.executable} setup.py build_ext --inplace && {sys.executable} -c 'import hello; print(hello.hello(10))'", shell=True),
    "ipython_cython": python('''
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance(); ip.run_line_magic("load_ext", "Cython")
        ip.run_cell_magic("cython", "", "def twice(int x):\\n    return 2 * x\\n")
        assert ip.user_ns["twice"](21) == 42
        print("%%cython ok")
    '''),
    "source_only": run(
        f"{sys.executable} setup.py -q sdist -d /tmp/documents/sdist && {sys.executable} -m pip --disable-pip-version-check install"
        " --no-index --no-build-isolation --no-binary :all: /tmp/documents/sdist/srconly-1.0.tar.gz"
        f" && cd / && {sys.executable} -c 'import srconly; print(srconly.answer())'", cwd=sdist, shell=True),
    "pip": run([sys.executable, "-m", "pip", "--version"]),
    "labextensions": run(["jupyter", "labextension", "list"]),
}))
"""


@pytest.fixture(scope="module")
def documents(cell_image) -> dict:
    """One container per cell runs every check; HOME is the image's (docker-stacks runs their units so)."""
    arguments = json.dumps([IMPORTS])
    out = docker.run(cell_image, ["python", "-c", REPORT, arguments], remove=True, entrypoint="", envs={"PYTHONWARNINGS": "ignore::DeprecationWarning"})
    return json.loads(out.strip().splitlines()[-1])


def test_every_docker_stacks_package_imports(cell_id, documents):
    assert documents["imports"]["code"] == 0, f"{cell_id}: {documents['imports']['output']}"


@pytest.mark.parametrize("fmt", ["html", "pdf", "latex", "rst", "markdown"])
def test_a_notebook_with_maths_executes_and_exports(cell_id, documents, fmt):
    result = documents["exports"][fmt]
    assert result["code"] == 0 and result["size"] > 0, f"{cell_id} --to {fmt}: {result['output']}"


def test_pandoc_runs(cell_id, documents):
    pandoc = documents["pandoc"]
    assert pandoc["code"] == 0 and pandoc["output"].startswith("pandoc"), f"{cell_id}: {pandoc['output']}"


def test_matplotlib_renders_with_usetex(cell_id, documents):
    assert documents["usetex"]["code"] == 0, f"{cell_id}: {documents['usetex']['output']}"


def test_matplotlib_has_its_font_cache_and_the_common_fonts(cell_id, documents):
    assert documents["fonts"]["code"] == 0, f"{cell_id}: {documents['fonts']['output']}"


def test_matplotlib_saves_mp4_animations(cell_id, documents):
    assert documents["animation"]["code"] == 0, f"{cell_id}: {documents['animation']['output']}"


def test_cython_builds_an_extension_and_the_cython_magic_works(cell_id, documents):
    assert documents["cython"]["code"] == 0 and "45" in documents["cython"]["output"].splitlines(), f"{cell_id}: {documents['cython']['output']}"
    assert documents["ipython_cython"]["code"] == 0, f"{cell_id}: {documents['ipython_cython']['output']}"


def test_pip_installs_a_source_only_package_with_a_c_extension(cell_id, documents):
    result = documents["source_only"]
    assert result["code"] == 0 and "42" in result["output"].splitlines(), f"{cell_id}: {result['output']}"


def test_pip_is_the_locked_one(cell_id, documents, cell):
    locked = json.loads((Path(__file__).resolve().parents[2] / "locks" / cell_id / "lock.json").read_text())["groups"]["venv"]
    assert documents["pip"]["output"].startswith(f"pip {locked['pip']} "), f"{cell_id}: {documents['pip']['output']}"


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_the_jupyterlab_extension_is_enabled(cell_id, documents, extension):
    # The list goes to stderr with colours, as docker-stacks' test reads it.
    text = re.sub(r"\x1b\[[0-9;]*m", "", documents["labextensions"]["output"])
    lines = [line.split() for line in text.splitlines() if line.split()[:1] == [extension]]
    assert lines and all("enabled" in words and "OK" in words for words in lines), f"{cell_id}: {extension} not enabled and OK:\n{text}"
