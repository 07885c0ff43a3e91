"""LLVM renderer of the loop IR."""
