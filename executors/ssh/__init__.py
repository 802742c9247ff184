"""SSH nodes: connections through the jump host, the transport over them, node health."""
