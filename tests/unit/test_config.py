import pytest

from evaluator.config import Config


def test_from_env_reads_prefixed_variables_and_converts_types():
    config = Config.from_env({"EVALUATOR_REDIS_URL": "redis://x:1/2", "EVALUATOR_SANDBOX_TIMEOUT_S": "30",
                              "EVALUATOR_SANDBOX_CPUS": "0.5", "UNRELATED": "1"})
    assert config.redis_url == "redis://x:1/2"
    assert config.sandbox_timeout_s == 30
    assert config.sandbox_cpus == 0.5
    assert config.database_url == Config().database_url


def test_from_env_refuses_a_malformed_number_naming_the_variable():
    with pytest.raises(ValueError, match="EVALUATOR_API_PORT"):
        Config.from_env({"EVALUATOR_API_PORT": "eighty"})


def test_presigning_uses_the_public_endpoint_when_set():
    assert Config(s3_endpoint_url="http://minio:9000").presign_endpoint_url == "http://minio:9000"
    config = Config(s3_endpoint_url="http://minio:9000", s3_public_endpoint_url="http://localhost:9000")
    assert config.presign_endpoint_url == "http://localhost:9000"


def test_env_example_documents_every_setting():
    import dataclasses
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    missing = [f.name for f in dataclasses.fields(Config) if f"EVALUATOR_{f.name.upper()}" not in text]
    assert not missing, f".env.example lacks {missing}"


def test_check_secrets_refuses_placeholders_copied_from_an_example():
    from evaluator.errors import ConfigInvalid

    good = Config(events_token="e" * 32, s3_secret_key="s3-random-1234",
                  database_url="postgresql://evaluator:5f0c1d@postgres:5432/evaluator")
    good.check_secrets()
    Config(events_token="e" * 32).check_secrets()  # a URL without a password (trust auth) is no placeholder
    with pytest.raises(ConfigInvalid, match="EVALUATOR_EVENTS_TOKEN"):
        good.replace(events_token="change-me-events-token").check_secrets()
    with pytest.raises(ConfigInvalid, match="EVALUATOR_S3_SECRET_KEY"):
        good.replace(s3_secret_key="change-me-minio-secret").check_secrets()
    with pytest.raises(ConfigInvalid, match="password in EVALUATOR_DATABASE_URL"):
        good.replace(database_url="postgresql://evaluator:change-me-postgres@postgres/evaluator").check_secrets()
