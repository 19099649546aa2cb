"""The model registry: versions, scores, gated promotion, aliases, digests, ``--model ALIAS``.

Logic tests use a tiny model directory (hashed and described, never run) and ``AngleEmbedder``,
whose pair cosines are set by construction, so STS-B Spearman is exactly +100 or -100. The
integration tests use the real all-MiniLM-L6-v2 and STS-B dev.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from typer.testing import CliRunner

from embedops import EmbeddingProcessor, errors
from embedops.cli import app
from embedops.models.base import Embedder, ModelSpec
from embedops.models.loader import load_embedder
from embedops.quality import GATES, Gate
from embedops.registry import ModelRegistry, resolve_model_arg, spec_metadata
from tests.conftest import shared_file

runner = CliRunner()
PAIRS = 6


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


class AngleEmbedder:
    """Sentence ``a<i>`` is the first axis; ``b<i>`` is at angle ``(i + 1) * step`` from it,
    so the cosine of pair ``i`` falls as ``i`` grows (``reverse``: it rises)."""

    def __init__(self, spec: ModelSpec, *, reverse: bool = False) -> None:
        self._spec = spec
        self.reverse = reverse
        self.texts: list[str] = []

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [2 for _ in texts]

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.texts.extend(texts)
        out = np.zeros((len(texts), self._spec.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            i = int(text[1:])
            angle = (PAIRS - i if self.reverse else i + 1) * math.pi / (2 * PAIRS + 2)
            out[row, :2] = (1.0, 0.0) if text[0] == "a" else (math.cos(angle), math.sin(angle))
        return out


@pytest.fixture
def stsb(tmp_path: Path) -> Path:
    """Six pairs whose human scores fall with ``i`` (5.0 down to 0.0)."""
    path = tmp_path / "stsb.tsv"
    lines = [f"g\tf\t2012\t{i:04d}\t{5 - i}.000\ta{i}\tb{i}" for i in range(PAIRS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A model directory that the resolver accepts: config, tokenizer and safetensors."""
    from safetensors.numpy import save_file

    path = tmp_path / "tiny-model"
    path.mkdir()
    (path / "config.json").write_text('{"hidden_size": 8, "max_position_embeddings": 32}')
    (path / "tokenizer.json").write_text("{}")
    save_file({"w": np.arange(16, dtype=np.float32).reshape(4, 4)}, str(path / "model.safetensors"))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tamper(weights: Path) -> None:
    """Change the last byte (tensor data, not the header, which the resolver parses)."""
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def _spec(store: Path, version: str) -> ModelSpec:
    record = ModelRegistry(store=store).get(version)
    return load_embedder(record.load_arg, record.backend).spec


def test_add_records_the_version(tiny_model: Path, store: Path) -> None:
    registry = ModelRegistry(store=store)
    record = registry.add(str(tiny_model), backend="onnx")
    sha = _sha(tiny_model / "model.safetensors")
    assert record.version == f"tiny-model-onnx-fp32-{sha[:12]}"
    assert record.digest == f"sha256:{sha}"
    assert (record.name, record.model, record.path) == (
        "tiny-model",
        str(tiny_model),
        str(tiny_model),
    )
    assert (record.backend, record.engine, record.precision) == ("onnx", "onnx", "fp32")
    assert (record.dim, record.max_tokens, record.pooling, record.normalization) == (
        8,
        32,
        "mean",
        "l2",
    )
    assert set(record.libraries) == {
        "embedops",
        "onnxruntime",
        "onnx",
        "torch",
        "transformers",
        "tokenizers",
    }
    assert record.evaluation is None
    # Saved as JSON in the store; adding again keeps one entry.
    saved = json.loads((store / "registry.json").read_text())
    assert list(saved["versions"]) == [record.version]
    assert saved["versions"][record.version]["digest"] == f"sha256:{sha}"
    assert registry.add(str(tiny_model), backend="onnx") == record
    assert [v.version for v in ModelRegistry(store=store).versions()] == [record.version]
    assert not list(store.glob("*.tmp"))


def test_static_version_uses_the_static_gate(tiny_model: Path, store: Path) -> None:
    registry = ModelRegistry(store=store)
    record = registry.add(str(tiny_model), backend="static")
    assert (record.backend, record.precision, record.dim) == ("static", "pca256", 256)
    assert registry.gate_for(record) == GATES["static"]
    assert registry.gate_for(registry.add(str(tiny_model), backend="onnx-int8")) == GATES["int8"]


def test_aliases_resolve_to_the_version_and_its_backend(tiny_model: Path, store: Path) -> None:
    assert resolve_model_arg(store, "candidate", None) is None  # no registry yet
    assert not store.exists()  # reading creates nothing
    registry = ModelRegistry(store=store)
    record = registry.add(str(tiny_model), backend="static")
    registry.set_alias("candidate", record.version)
    assert resolve_model_arg(store, "candidate", None) == (str(tiny_model), "static")
    assert resolve_model_arg(store, record.version, "static") == (str(tiny_model), "static")
    assert resolve_model_arg(store, "all-MiniLM-L6-v2", "onnx") is None  # not registered
    with pytest.raises(errors.ConfigError, match="run by backend 'static', but backend 'onnx'"):
        resolve_model_arg(store, "candidate", "onnx")
    assert registry.aliases()["candidate"].version == record.version
    # The processor loads the registered files and backend (with the backend's batching).
    with EmbeddingProcessor(store=store, model="candidate") as p:
        assert p.model_version == record.version
        assert (p.backend, p.batch_tokens) == ("static", None)
    with pytest.raises(errors.ConfigError, match="backend 'onnx' was asked"):
        _ = EmbeddingProcessor(store=store, model="candidate", backend="onnx").embedder


def test_production_moves_only_through_promote(tiny_model: Path, store: Path) -> None:
    registry = ModelRegistry(store=store)
    record = registry.add(str(tiny_model), backend="onnx")
    with pytest.raises(errors.ConfigError, match="'production' is set only by promote"):
        registry.set_alias("production", record.version)
    with pytest.raises(
        errors.QualityGateFailed, match="was not evaluated; run: embedops models evaluate"
    ):
        registry.promote(record.version)
    with pytest.raises(errors.ConfigError, match="not a valid name"):
        registry.set_alias("Bad Name", record.version)
    with pytest.raises(errors.ConfigError, match="'nope' is not registered"):
        registry.set_alias("candidate", "nope")
    assert registry.aliases() == {}
    code, _, stderr = _run("models", "alias", "production", record.version, "--store", str(store))
    assert code == errors.ConfigError.exit_code
    assert "set only by promote" in _one_line_error(stderr)


def test_evaluate_and_promote(tiny_model: Path, store: Path, stsb: Path) -> None:
    record = ModelRegistry(store=store).add(str(tiny_model), backend="onnx")
    spec = _spec(store, record.version)
    lenient = {"fp32": Gate("fp32", stsb_min=99.0, cosine_min=0.9999)}
    registry = ModelRegistry(store=store, gates=lenient)
    model = AngleEmbedder(spec)
    evaluated = registry.evaluate(record.version, stsb=stsb, embedder=model, reference=model)
    evaluation = evaluated.evaluation
    assert evaluation is not None
    assert (evaluation.stsb_spearman, evaluation.cosine_min, evaluation.cosine_mean) == (
        100.0,
        1.0,
        1.0,
    )
    assert (evaluation.gate, evaluation.failures, evaluation.passed) == (lenient["fp32"], (), True)
    assert evaluation.reference == record.version
    assert evaluation.data == str(stsb)
    assert registry.promote(record.version).version == record.version
    assert registry.aliases()["production"].version == record.version
    # Read back from the file by another registry object: the same record.
    assert ModelRegistry(store=store).get("production") == evaluated
    # The standard fp32 gate holds at promote time too: 100 is above its 86.9 bound.
    with pytest.raises(errors.QualityGateFailed, match=r"STS-B Spearman 100\.0000 is not <= 86\.9"):
        ModelRegistry(store=store).promote(record.version, alias="candidate")
    assert "candidate" not in registry.aliases()


def test_promote_refuses_a_failed_gate_with_its_figures(
    tiny_model: Path, store: Path, stsb: Path
) -> None:
    registry = ModelRegistry(store=store)
    record = registry.add(str(tiny_model), backend="onnx")
    reversed_model = AngleEmbedder(_spec(store, record.version), reverse=True)
    reference = AngleEmbedder(_spec(store, record.version))
    evaluation = registry.evaluate(
        record.version, stsb=stsb, embedder=reversed_model, reference=reference
    ).evaluation
    assert evaluation is not None
    assert evaluation.stsb_spearman == -100.0
    # Pair i's b-vector is at angle (6 - i) steps instead of (i + 1): cos((5 - 2i) * pi / 14).
    cosines = [1.0] * PAIRS + [math.cos((PAIRS - 1 - 2 * i) * math.pi / 14) for i in range(PAIRS)]
    assert evaluation.cosine_min == pytest.approx(min(cosines), abs=1e-6)
    assert evaluation.cosine_mean == pytest.approx(sum(cosines) / len(cosines), abs=1e-6)
    assert evaluation.failures == (
        "STS-B Spearman -100.0000 is not >= 86.5",
        f"min cosine to reference {evaluation.cosine_min:.4f} is not >= 0.9999",
    )
    code, _, stderr = _run("models", "promote", record.version, "--store", str(store))
    assert code == errors.QualityGateFailed.exit_code == 12
    line = _one_line_error(stderr)
    assert f"cannot promote {record.version} to production: quality gate failed" in line
    assert "STS-B Spearman -100.0, cosine to reference min" in line
    assert "gate fp32: stsb_min=86.5, stsb_max=86.9, cosine_min=0.9999" in line
    assert "production" not in registry.aliases()


def test_evaluate_refuses_another_models_embedder(
    tiny_model: Path, store: Path, stsb: Path
) -> None:
    registry = ModelRegistry(store=store)
    onnx = registry.add(str(tiny_model), backend="onnx")
    int8 = registry.add(str(tiny_model), backend="onnx-int8")
    with pytest.raises(errors.ConfigError, match=f"not {onnx.version}"):
        registry.evaluate(
            onnx.version, stsb=stsb, embedder=AngleEmbedder(_spec(store, int8.version))
        )
    assert registry.get(onnx.version).evaluation is None


def test_torch_version_is_its_own_reference(tiny_model: Path, store: Path, stsb: Path) -> None:
    registry = ModelRegistry(store=store, gates={"fp32": Gate("fp32", cosine_min=0.9999)})
    record = registry.add(str(tiny_model), backend="torch")
    model = AngleEmbedder(_spec(store, record.version))
    evaluation = registry.evaluate(record.version, stsb=stsb, embedder=model).evaluation
    assert evaluation is not None
    assert (evaluation.reference, evaluation.cosine_min, evaluation.passed) == (
        record.version,
        1.0,
        True,
    )
    # Scored against itself through a memo: each sentence embedded once, not twice.
    assert sorted(model.texts) == sorted(
        [f"a{i}" for i in range(PAIRS)] + [f"b{i}" for i in range(PAIRS)]
    )


def test_cli_evaluate_builds_the_torch_reference(
    tiny_model: Path, store: Path, stsb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []

    def fake_load(model: str, backend: str = "torch", **kwargs: object) -> Embedder:
        built.append(backend)
        return AngleEmbedder(load_embedder(model, backend).spec)

    record = ModelRegistry(store=store).add(str(tiny_model), backend="onnx-int8")
    monkeypatch.setattr("embedops.registry.load_embedder", fake_load)
    code, stdout, _ = _run(
        "models", "evaluate", record.version, "--stsb", str(stsb), "--store", str(store), "--json"
    )
    assert code == 0
    result = json.loads(stdout)
    assert built == ["onnx-int8", "torch"]  # the version, then its reference
    assert result["version"] == record.version
    assert result["reference"] == record.version.replace("-onnx-int8-", "-torch-fp32-")
    # The int8 gate has no upper bound on STS-B: 100 passes it.
    assert (result["stsb_spearman"], result["cosine_mean"], result["passed"]) == (100.0, 1.0, True)
    assert result["failures"] == []
    assert result["gate"] == {
        "name": "int8",
        "stsb_min": 85.7,
        "stsb_max": None,
        "cosine_min": None,
        "cosine_mean": 0.99,
    }


def test_tampered_weights_are_refused(tiny_model: Path, store: Path, stsb: Path) -> None:
    registry = ModelRegistry(store=store, gates={"fp32": Gate("fp32", stsb_min=99.0)})
    record = registry.add(str(tiny_model), backend="onnx")
    registry.set_alias("candidate", record.version)
    model = AngleEmbedder(_spec(store, record.version))
    registry.evaluate(record.version, stsb=stsb, embedder=model, reference=model)  # passes
    weights = tiny_model / "model.safetensors"
    _tamper(weights)
    for model in ("candidate", record.version):
        code, _, stderr = _run("compare", "a", "b", "--model", model, "--store", str(store))
        assert code == errors.ModelLoadError.exit_code == 7
        line = _one_line_error(stderr)
        assert f"weights {weights} no longer match model version {record.version}" in line
        assert f"registered {record.digest[7:19]}..." in line
        assert "restore the original files, or register these with: embedops models add" in line
    with pytest.raises(errors.ModelLoadError, match="no longer match"):
        registry.evaluate(record.version, stsb=stsb)
    with pytest.raises(errors.ModelLoadError, match="no longer match"):
        registry.promote(record.version)
    assert "production" not in registry.aliases()


def test_list_and_show_json(tiny_model: Path, store: Path) -> None:
    registry = ModelRegistry(store=store)
    onnx = registry.add(str(tiny_model), backend="onnx")
    static = registry.add(str(tiny_model), backend="static")
    registry.set_alias("candidate", static.version)
    code, stdout, _ = _run("models", "list", "--store", str(store), "--json")
    assert code == 0
    listed = json.loads(stdout)
    assert [v["version"] for v in listed["versions"]] == [onnx.version, static.version]
    assert listed["aliases"] == {"candidate": static.version}
    code, stdout, _ = _run("models", "show", "candidate", "--store", str(store), "--json")
    shown = json.loads(stdout)
    assert (shown["version"], shown["dim"], shown["aliases"]) == (
        static.version,
        256,
        ["candidate"],
    )
    code, stdout, _ = _run("models", "show", onnx.version, "--store", str(store))
    assert f"digest: {onnx.digest}" in stdout
    assert "evaluation: none" in stdout
    code, stdout, _ = _run("models", "list", "--store", str(store))
    assert "not evaluated" in stdout and "candidate" in stdout


def test_cli_add_and_unknown_model(tiny_model: Path, store: Path) -> None:
    code, stdout, _ = _run(
        "models", "add", str(tiny_model), "--backend", "onnx", "--store", str(store)
    )
    assert code == 0
    version = ModelRegistry(store=store).versions()[0].version
    assert stdout.startswith(f"registered {version} (sha256:")
    code, _, stderr = _run("models", "show", "prod", "--store", str(store))
    assert code == errors.ConfigError.exit_code
    assert f"model 'prod' is not registered in {store / 'registry.json'}" in _one_line_error(stderr)
    code, _, stderr = _run(
        "models", "add", str(tiny_model), "--backend", "gpu", "--store", str(store)
    )
    assert code == errors.ConfigError.exit_code
    assert "unknown backend 'gpu'" in _one_line_error(stderr)


def test_corrupt_registry_is_a_store_error(store: Path) -> None:
    store.mkdir()
    (store / "registry.json").write_text('{"versions": ')
    code, _, stderr = _run("models", "list", "--store", str(store))
    assert code == errors.StoreError.exit_code
    line = _one_line_error(stderr)
    assert f"model registry {store / 'registry.json'} cannot be read" in line
    assert "move it away to start an empty registry" in line


def test_newer_registry_format_is_refused(store: Path) -> None:
    store.mkdir()
    (store / "registry.json").write_text('{"format": 2, "versions": {}, "aliases": {}}')
    with pytest.raises(errors.StoreError, match="has format 2, newer than this embedops reads"):
        ModelRegistry(store=store).versions()


def _set_alias(store: Path, version: str, name: str) -> None:
    ModelRegistry(store=store).set_alias(name, version)


def test_concurrent_writers_lose_nothing(tiny_model: Path, store: Path) -> None:
    version = ModelRegistry(store=store).add(str(tiny_model), backend="onnx").version
    names = [f"alias-{i}" for i in range(16)]
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        list(pool.map(_set_alias, [store] * len(names), [version] * len(names), names))
    assert sorted(ModelRegistry(store=store).aliases()) == sorted(names)


def test_spec_metadata() -> None:
    spec = ModelSpec(
        name="m", path=Path("/x"), digest="sha256:" + "ab" * 32, dim=8, max_tokens=32,
        backend="onnx", precision="int8",
    )  # fmt: skip
    meta = spec_metadata(spec, "onnx-int8")
    assert {k: v for k, v in meta.items() if k != "libraries"} == {
        "model_version": "m-onnx-int8-abababababab",
        "model_name": "m",
        "digest": "sha256:" + "ab" * 32,
        "backend": "onnx-int8",
        "engine": "onnx",
        "precision": "int8",
        "dim": "8",
        "max_tokens": "32",
        "pooling": "mean",
        "normalization": "l2",
    }
    assert set(json.loads(meta["libraries"])) == {
        "embedops", "onnxruntime", "onnx", "torch", "transformers", "tokenizers"
    }  # fmt: skip


# Integration: the real model and STS-B dev.


class Memo:
    """The reference's vectors, kept so that every test of the module embeds STS-B once."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.vectors: dict[str, NDArray[np.float32]] = {}

    @property
    def spec(self) -> ModelSpec:
        return self.inner.spec

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])


@pytest.fixture(scope="module")
def reference(real_backend: Embedder) -> Iterator[Memo]:
    yield Memo(real_backend)


@pytest.mark.integration
@pytest.mark.quality
def test_real_onnx_passes_promotes_and_serves_production(tmp_path: Path, reference: Memo) -> None:
    store = tmp_path / "store"
    registry = ModelRegistry(store=store)
    record = registry.add("all-MiniLM-L6-v2", backend="onnx")
    assert record.version == "all-minilm-l6-v2-onnx-fp32-53aa51172d14"
    assert (record.dim, record.max_tokens, record.local) == (384, 256, False)
    evaluation = registry.evaluate(
        record.version, stsb=shared_file("stsb-dev.tsv"), reference=reference
    ).evaluation
    assert evaluation is not None
    assert evaluation.stsb_spearman == pytest.approx(86.7, abs=0.2)
    assert evaluation.cosine_min is not None and evaluation.cosine_min >= 0.9999
    assert evaluation.reference == "all-minilm-l6-v2-torch-fp32-53aa51172d14"
    assert (evaluation.gate.name, evaluation.failures) == ("fp32", ())

    code, stdout, _ = _run("models", "promote", record.version, "--store", str(store))
    assert (code, stdout.strip()) == (0, f"production -> {record.version}")
    code, stdout, _ = _run(
        "compare", "A man is playing a flute.", "A man plays the flute.",
        "--model", "production", "--store", str(store), "--json",
    )  # fmt: skip
    assert code == 0
    direct = EmbeddingProcessor(store=store, model="all-MiniLM-L6-v2", backend="onnx")
    expected = direct.similarity("A man is playing a flute.", "A man plays the flute.")
    assert json.loads(stdout)["cosine"] == pytest.approx(expected, abs=1e-6)
    assert 0.8 < expected < 1.0

    # A deliberately strict gate fails, and promote then refuses it.
    strict = ModelRegistry(store=store, gates={"fp32": Gate("fp32", stsb_min=90.0)})
    failed = strict.evaluate(record.version, stsb=shared_file("stsb-dev.tsv"), reference=reference)
    assert failed.evaluation is not None
    assert failed.evaluation.failures == (
        f"STS-B Spearman {failed.evaluation.stsb_spearman:.4f} is not >= 90.0",
    )
    with pytest.raises(errors.QualityGateFailed, match=r"is not >= 90\.0"):
        strict.promote(record.version, alias="candidate")


@pytest.mark.integration
def test_real_model_copy_with_one_byte_changed_is_refused(tmp_path: Path) -> None:
    from embedops.models.registry import resolve_model

    copy = tmp_path / "minilm"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2").path, copy)
    store = tmp_path / "store"
    record = ModelRegistry(store=store).add(str(copy), backend="onnx")
    assert (
        record.digest == "sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )
    _tamper(copy / "model.safetensors")
    code, _, stderr = _run("compare", "a", "b", "--model", record.version, "--store", str(store))
    assert code == 7
    line = _one_line_error(stderr)
    assert (
        f"weights {copy / 'model.safetensors'} no longer match model version {record.version}"
        in line
    )


def test_blue_green_promote_of_a_collection(tiny_model: Path, store: Path, stsb: Path) -> None:
    """Embedding a collection with another model version builds its table while the published
    one keeps serving; promote switches readers only through the registry's gate."""
    import json as _json

    from embedops import EmbeddingProcessor
    from embedops.config import Settings
    from tests.fakes import FakeEmbedder

    src = store.parent / "items.jsonl"
    src.write_text("".join(_json.dumps({"id": str(i), "text": f"t {i}"}) + "\n" for i in range(9)))
    blue = FakeEmbedder()
    with EmbeddingProcessor(store=store, embedder=blue) as p:
        assert p.process(src, collection="c", id_field="id", text_field="text").published == 1
    record = ModelRegistry(store=store).add(str(tiny_model), backend="static")
    green = FakeEmbedder(dim=record.dim)
    green._spec = _spec(store, record.version)
    settings = Settings(store=store, keep_old_tables=False)
    with EmbeddingProcessor(settings=settings, embedder=green) as p:
        report = p.process(src, collection="c", id_field="id", text_field="text")
        assert (report.inserted, report.published) == (9, None)  # built, not published
        assert p.store.catalog.published("c").model_version == blue.spec.version  # type: ignore[union-attr]
        with pytest.raises(errors.QualityGateFailed, match="was not evaluated"):
            p.promote("c")
        bad = AngleEmbedder(green.spec, reverse=True)
        ModelRegistry(store=store).evaluate(record.version, stsb=stsb, embedder=bad,
                                            reference=bad)  # fmt: skip
        with pytest.raises(errors.QualityGateFailed, match="quality gate failed"):
            p.promote("c")
        good = AngleEmbedder(green.spec)
        ModelRegistry(store=store).evaluate(record.version, stsb=stsb, embedder=good,
                                            reference=good)  # fmt: skip
        entry = p.promote("c")
        assert (entry.action, entry.model_version, entry.number) == (
            "promote",
            green.spec.version,
            2,
        )
        assert p.search("c", "t 3", k=1)[0][0] == "3"  # green's own vectors answer
        assert p.store.versions("c") == [green.spec.version]  # blue's table dropped
