"""llama.cpp's queries, watched in its graph (kvstore.llama_engine.QueryEnergy, what
tools/calibrate_llama.py steps key channels by), against the project's numpy forward pass of the
same GGUF (tools/kvmodel.py): the same per-pair query energy, and watching changes no logit.
Behaviour only, never times.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypkg_support import PYTHON_DIR, ROOT, import_package  # noqa: E402

import_package()  # builds/locates libkvstore_c for the child
LLAMA_HOME = Path(os.environ.get("KVSTORE_CACHE") or Path.home() / ".cache/kvstore") / "llama.cpp-0c1e570"

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    import kvmodel  # first: it picks BLAS threads before numpy loads
    import numpy as np
    import calibrate_key_channels
    from kvstore.llama_engine import Engine, QueryEnergy

    queries = QueryEnergy()
    engine = Engine(str(kvmodel.gguf_path()), 256, 1, flash_attn=0, queries=queries)
    ids = engine.tokenize(open(sys.argv[1]).read(), bos=True)[:96]
    plain = engine.prefill(ids, 0, all_logits=True)
    engine.clear()
    queries.on = True
    watched = engine.prefill(ids, 0, all_logits=True)
    queries.on = False
    assert np.array_equal(plain, watched), "watching the graph changed the logits"
    assert queries.tokens == {layer: 96 for layer in range(30)}, queries.tokens
    mine = queries.pair_energy(3)
    assert mine.shape == (30, 3, 32) and (mine > 0).all()

    # The numpy forward pass of the same weights (dequantized), same tokens: the same energies up to
    # llama.cpp's quantized activations (measured: at most 3.2%, median 0.3%).
    ref = calibrate_key_channels.pair_energy(kvmodel.load_model(), ids)
    ratio = np.abs(np.log(mine / ref))
    assert ratio.max() < 0.1 and np.median(ratio) < 0.01, (ratio.max(), np.median(ratio))
    print("ok", round(float(ratio.max()), 4))
""")


def test_query_energy_from_llama_cpp_matches_the_numpy_forward_pass(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LLAMA_HOME / "llama_cpp_python-0.3.36"), str(PYTHON_DIR)]),
           "LLAMA_CPP_LIB_PATH": str(LLAMA_HOME / "build" / "bin")}
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    r = subprocess.run([sys.executable, str(script), str(ROOT / "tools/texts/libpng_manual_intro.txt"),
                        str(ROOT / "tools")], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split()[0] == "ok", r.stdout
