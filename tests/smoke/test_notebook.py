"""The example notebook (examples/getting-started.ipynb), executed cell by cell in every image.

It goes the way a user's browser goes: the notebook is uploaded through Jupyter's contents API into
the folder shared with the host, a session opens a kernel for it (REST), every code cell runs over the
kernel's websocket, and the executed notebook, outputs included, is saved back through the server.
"""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest

from tests.containers import host_user_dir, jupyter_container

pytestmark = pytest.mark.docker

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "getting-started.ipynb"
NAME = NOTEBOOK.name
CREATED = ("digits-loss.png", "digits-model.keras")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def printed(notebook: dict) -> str:
    """Everything the code cells printed (a saved notebook may store text as a list of lines)."""
    texts = [o.get("text", "") for c in notebook["cells"] for o in c.get("outputs", [])]
    return "".join("".join(t) if isinstance(t, list) else t for t in texts)


@pytest.fixture(scope="module")
def executed(cell_image, cell_id, tmp_path_factory):
    """Run the notebook in a fresh container; yield (the executed notebook as saved, host folder, uid, container)."""
    folder, uid = host_user_dir(tmp_path_factory.mktemp("notebook"))
    notebook = json.loads(NOTEBOOK.read_text())
    with jupyter_container(cell_image, src=folder, uid=uid) as running:
        server = running.jupyter
        status, body = server.request("PUT", f"/api/contents/{NAME}", body={"type": "notebook", "format": "json", "content": notebook})
        assert status in (200, 201), f"{cell_id}: uploading the notebook failed: {status} {body}"
        failures = []
        with server.notebook_session(NAME, timeout=300) as kernel:
            for index, cell in enumerate(notebook["cells"]):
                if cell["cell_type"] != "code":
                    continue
                result = kernel.execute("".join(cell["source"]), timeout=300)
                cell["outputs"], cell["execution_count"] = result.outputs, result.execution_count
                if result.status != "ok":
                    failures.append(f"cell {index}: {result.error}\n{result.stderr[-2000:]}")
                    break
        status, body = server.request("PUT", f"/api/contents/{NAME}", body={"type": "notebook", "format": "json", "content": notebook})
        assert status == 200, f"{cell_id}: saving the executed notebook failed: {status} {body}"
        assert not failures, f"{cell_id}: the example notebook failed in " + "\n".join(failures)
        yield json.loads((folder / NAME).read_text()), folder, uid, running


def test_every_cell_of_the_example_notebook_runs(cell_id, executed):
    notebook, _, _, _ = executed
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code_cells and all(c["execution_count"] for c in code_cells), f"{cell_id}: not every cell ran"
    errors = [o for c in code_cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{cell_id}: {errors}"
    text = printed(notebook)
    assert "/physical_device:CPU:0" in text, f"{cell_id}: {text}"
    accuracy = float(text.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.8, f"{cell_id}: the digits model learned too little (accuracy {accuracy})"


def test_the_loss_plot_is_a_png_in_the_notebook(cell_id, executed):
    notebook, _, _, _ = executed
    images = [o["data"]["image/png"] for c in notebook["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{cell_id}: no inline PNG in the saved notebook's outputs"
    assert base64.b64decode(images[0])[:8] == PNG_MAGIC, cell_id


def test_the_figure_and_model_land_in_the_host_folder_owned_by_the_host_user(cell_id, executed):
    _, folder, uid, _ = executed
    for name in (*CREATED, NAME):
        path = folder / name
        assert path.is_file(), f"{cell_id}: {name} is not in the host folder"
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid), f"{cell_id}: {name} belongs to {path.stat().st_uid}, not {uid}"
    assert (folder / "digits-loss.png").read_bytes()[:8] == PNG_MAGIC
    assert "config.json" in zipfile.ZipFile(folder / "digits-model.keras").namelist(), cell_id


def test_the_saved_model_loads_back(cell_id, executed):
    notebook, _, _, running = executed
    parameters = int(printed(notebook).split("parameters:")[1].split()[0])
    code = (
        "import keras\n"
        "from sklearn.datasets import load_digits\n"
        "model = keras.models.load_model('/src/digits-model.keras')\n"
        "digits = load_digits()\n"
        "predicted = model.predict((digits.data / 16.0).astype('float32'), verbose=0).argmax(axis=1)\n"
        "print(model.count_params(), (predicted == digits.target).mean())\n"
    )
    result = running.jupyter.execute(code, timeout=180)
    assert result.status == "ok", f"{cell_id}: {result.error}"
    count, accuracy = result.stdout.split()
    assert int(count) == parameters, cell_id
    assert float(accuracy) > 0.8, f"{cell_id}: the reloaded model predicts badly ({accuracy})"
