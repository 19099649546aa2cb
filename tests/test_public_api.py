import embedops


def test_public_api_is_curated() -> None:
    assert set(embedops.__all__) == {
        "CleanOptions",
        "CollectionNotFound",
        "ConfigError",
        "Embedder",
        "EmbeddingProcessor",
        "EmbedopsError",
        "FieldSpec",
        "InputError",
        "InvalidFormat",
        "ItemNotFound",
        "MemoryPressure",
        "MissingField",
        "ModelError",
        "ModelLoadError",
        "ModelSpec",
        "Reason",
        "RunReport",
        "Settings",
        "SourceNotFound",
        "StoreError",
        "__version__",
        "embed_with_retry",
    }
    for name in embedops.__all__:
        assert hasattr(embedops, name), name


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import embedops, sys; "
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
