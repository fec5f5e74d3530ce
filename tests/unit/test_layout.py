from evaluator.storage import layout


def test_bundle_key_round_trips():
    key = layout.bundle_key("iris", "alice", "logreg", "1.0.0", "abc", ".tar.gz")
    assert key == "bundles/iris/alice/logreg/1.0.0/abc.tar.gz"
    parsed = layout.parse_bundle_key(key)
    assert (parsed.benchmark, parsed.owner, parsed.name, parsed.version, parsed.stem, parsed.ext) == (
        "iris", "alice", "logreg", "1.0.0", "abc", ".tar.gz")


def test_foreign_and_malformed_keys_are_not_bundles():
    for key in ["results/iris/x/metrics.json", "bundles/iris/alice/m/1/x.txt", "bundles/iris/alice/m/x.zip",
                "bundles/iris/../m/1/x.zip", "bundles/iris/alice/m/1/.zip", "bundles/a/b/c/d/e/f.zip"]:
        assert layout.parse_bundle_key(key) is None, key


def test_dataset_keys_parse_features_and_labels_only():
    assert layout.parse_dataset_key("datasets/iris/1/labels.parquet").part == "labels"
    assert layout.parse_dataset_key("datasets/iris/1/features.csv").file_format == "csv"
    assert layout.parse_dataset_key("datasets/iris/1/other.parquet") is None
