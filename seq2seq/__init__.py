"""seq2seq: neural machine translation from Sutskever et al. (2014) to the Transformer."""

__version__ = "0.1.0"
