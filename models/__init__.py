"""torch ``nn.Module`` sequence classifiers (installed as ``qlam_tn.models``).

Every model maps ``(B, T, F)`` tokens to ``(B, num_classes)`` logits and streams:
``state = model.init_state(B)``, ``logits, state = model.step(x_t, state)``.
``state_size(model, seq_len)`` is the floats its streaming state carries token to token.

    from qlam_tn.models import build, count_parameters
    model = build("qlam", input_dim=28, num_classes=10, n_qubits=8)
    # int64 tokens (B, T) through an embedding of width 32, logits at every position (B, T, V):
    model = build("mamba", input_dim=32, num_classes=V, vocab_size=V, outputs="per_position")

``mamba`` and ``llama`` come from ``transformers``, imported only when one is built.
"""
from .common import count_parameters, match_hidden_size, state_size
from .heads import IGNORE_INDEX, SequenceModel, TokenEmbedding, count_correct, per_position_loss
from .llama import LlamaClassifier
from .mamba import MambaClassifier
from .qlam import QLAM, QLAMClassifier, QLAMConfig, QLAMState
from .registry import available, build, register, width_key
from .rnn import GRUClassifier, LSTMClassifier
from .ssm import SSMClassifier
from .transformer import TransformerClassifier

if "qlam" not in available():
    register("qlam", QLAMClassifier, width="head_hidden", per_position={"readout_at": "last"})

__all__ = [
    "build", "register", "available", "width_key", "count_parameters", "match_hidden_size", "state_size",
    "SequenceModel", "TokenEmbedding", "IGNORE_INDEX", "per_position_loss", "count_correct",
    "QLAM", "QLAMClassifier", "QLAMConfig", "QLAMState",
    "LSTMClassifier", "GRUClassifier", "TransformerClassifier", "SSMClassifier", "MambaClassifier",
    "LlamaClassifier",
]
