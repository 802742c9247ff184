"""The code scanner: a static rule pass over the AST, and the optional LLM review stage."""
