"""Scale-out on Ray: generate_dataset / embed_dataset on a local Ray instance started here (2 CPUs,
2 actors), checked against the single-process Model on the same prompts."""
import numpy as np
import pytest

import ggmlpy

import ray  # noqa: E402  (the test extra installs ray[data])
from ggmlpy.distributed.ray_data import embed_dataset, generate_dataset  # noqa: E402

PROMPTS = ["Once upon a time", "The capital of France is", "def fib(n):", "1, 2, 3, 4,",
           "My favourite food is", "In 1492, Columbus", "The best way to learn a language",
           "Dear Sir, I am writing", "Water boils at", "The quick brown fox"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def test_generate_dataset_equals_single_process(local_ray, smollm2_path):
    ds = ray.data.from_items([{"id": i, "prompt": p} for i, p in enumerate(PROMPTS)])
    rows = generate_dataset(ds, smollm2_path, concurrency=2, n_seq_max=4, n_threads=1, n_ctx=256,
                            max_new_tokens=16, temperature=0).take_all()
    got = {r["id"]: r["generated"] for r in rows}
    assert sorted(got) == list(range(len(PROMPTS)))
    with ggmlpy.Model(smollm2_path, n_ctx=256, n_threads=2) as m:
        ref = [m.generate(p, max_new_tokens=16, temperature=0) for p in PROMPTS]
        # sampled: a fixed seed gives every prompt its single-process text
        ref_s = [m.generate(p, max_new_tokens=12, temperature=0.9, seed=5) for p in PROMPTS]
    assert [got[i] for i in range(len(PROMPTS))] == ref
    rows = generate_dataset(ds, smollm2_path, concurrency=2, n_seq_max=4, n_threads=1, n_ctx=256,
                            max_new_tokens=12, temperature=0.9, seed=5, output_column="text").take_all()
    assert [r["text"] for r in sorted(rows, key=lambda r: r["id"])] == ref_s


def test_embed_dataset_equals_single_process(local_ray, smollm2_path):
    ds = ray.data.from_items([{"id": i, "text": p} for i, p in enumerate(PROMPTS)])
    rows = embed_dataset(ds, smollm2_path, concurrency=2, n_threads=1, n_ctx=128).take_all()
    got = np.stack([np.asarray(r["embedding"]) for r in sorted(rows, key=lambda r: r["id"])])
    with ggmlpy.Model(smollm2_path, n_ctx=128, n_threads=2) as m:
        ref = m.embed(PROMPTS)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_missing_column_is_a_clear_error(local_ray, smollm2_path):
    ds = ray.data.from_items([{"question": "hi"}])
    with pytest.raises(Exception, match="no column 'prompt'"):
        generate_dataset(ds, smollm2_path, n_threads=1, n_ctx=64, max_new_tokens=2).take_all()
