import pytest

from megapmc.testing.fixtures import train_sentencepiece


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory):
    """Path to a small LLaMA-style SentencePiece model (vocab 512) trained for this test session."""
    return train_sentencepiece(tmp_path_factory.mktemp("spm"))
