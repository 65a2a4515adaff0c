"""kvstore for vLLM: KVStoreConnector (kv_connector_module_path "kvstore.vllm"). See docs/vllm.md."""
from .connector import KVStoreConnector, KVStoreMetadata

__all__ = ["KVStoreConnector", "KVStoreMetadata"]
