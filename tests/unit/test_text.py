"""Text path: cleaning, MiniLM embeddings from the installed package (cached), and the sentiment
config's pipeline on a sample with the fast TF-IDF embedding."""

from __future__ import annotations

import numpy as np
import pytest

from mlpipeline.models.text import SentenceEmbedder, TextCleaner, clean_text


def test_clean_text():
    assert clean_text("RT @bob: I &amp; you   love https://t.co/x #cars") == "@user: I & you love http #cars"
    assert clean_text(None) == "" and clean_text(float("nan")) == ""
    out = TextCleaner().fit_transform(np.array([["a  b"], [None]], dtype=object))
    assert out.tolist() == ["a b", ""]


def test_minilm_embeddings_are_normalised_cached_and_pickle_without_the_network(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("MLPIPELINE_CACHE", str(tmp_path))
    emb = SentenceEmbedder().fit(None)
    texts = np.array(["I love self-driving cars", "I will never ride in one", "I love self-driving cars"], dtype=object)
    a = emb.transform(texts)
    assert a.shape == (3, 384) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.array_equal(a[0], a[2]) and not np.allclose(a[0], a[1])
    assert (tmp_path / "embeddings.sqlite").stat().st_size > 0
    blob = pickle.dumps(emb)
    assert len(blob) < 2000, "the network is not pickled into the model file"
    assert np.array_equal(pickle.loads(blob).transform(texts), a)  # served from the cache, same bytes


def test_sentiment_config_trains_on_text(repo_root, tmp_path, monkeypatch):
    from mlpipeline.config import load_config
    from mlpipeline.packaging import PackagedModel
    from mlpipeline.stages import evaluate, features, ingest, package, preprocess, split, train, tune

    monkeypatch.setenv("MLPIPELINE_CACHE", str(tmp_path / "cache"))
    cfg = load_config(repo_root / "configs" / "sentiment.yaml")
    s = cfg.sections()
    s["data"] = dict(s["data"], sample_rows=3000)
    s["preprocess"] = dict(s["preprocess"], text_embedding="tfidf")
    s["tune"] = dict(s["tune"], families=["logistic_regression"], n_trials=2)
    d = tmp_path
    ingest.ingest(s["data"], d / "data", d / "schema.json")
    split.split(d / "data", s["data"], s["split"], d / "tr", d / "va", d / "te", d / "split.json")
    rep = preprocess.preprocess(d / "tr", s["data"], s["preprocess"], s["features"], d / "pre", d / "pre.json")
    assert rep["text_columns"] == ["text"] and rep["n_output_features"] == 128
    features.features(d / "tr", d / "pre", s["data"], s["features"], d / "feat", d / "feat.json")
    tune.tune(d / "tr", d / "va", d / "feat", s["data"], s["tune"], s["train"], d / "best.json", d / "trials.csv")
    train.train(d / "tr", d / "feat", d / "best.json", s["data"], s["train"], d / "model")
    m = evaluate.evaluate(d / "model", d / "va", d / "te", s["data"], s["evaluate"], s["validation"], d / "m.json", d / "sig.json", d / "e.html")
    assert m["primary_metric"] == "f1_macro" and m["test"]["f1_macro"] > 0.45, m["test"]
    assert set(m["test"]["confusion_matrix"]["labels"]) == {"negative", "neutral", "positive"}
    conf = {**cfg.model_dump(mode="json"), **s, "registry": {"path": str(d / "reg"), "model_name": "sentiment"}}
    package.package(d / "model", d / "m.json", d / "sig.json", d / "schema.json", d / "split.json", conf, d / "pkg")
    import pandas as pd

    preds = PackagedModel.load(d / "pkg").predict_frame(pd.DataFrame({"text": ["I love it, best idea ever!", "worst idea, I hate it"]}))
    assert list(preds.columns) == ["prediction", "proba_negative", "proba_neutral", "proba_positive"]
    assert preds["prediction"].tolist()[1] == "negative"


def test_unknown_text_column(churn_df):
    from mlpipeline.config import FeaturesConfig, PreprocessConfig
    from mlpipeline.errors import DataError
    from mlpipeline.models.transforms import build_preprocessor

    with pytest.raises(DataError, match="text_columns.*review"):
        build_preprocessor(PreprocessConfig(text_columns=("review",)), FeaturesConfig(), churn_df)
