"""The live state callfork nodes share through Redis ([cluster] redis_url): which nodes are alive
(a registration renewed by a heartbeat, expiring after node_ttl_s) and which node owns which call,
stream and conference room. Only live state: after a Redis restart each node writes its own again
(the registry heals). Records and webhooks are not here (PostgreSQL, [store]).

`Registry` (cluster/registry.py) is the whole API, with `Instance` and `NodeIdTaken`
(cluster/instance.py: which process holds a node id); callfork/cluster_node.py composes it into the
service. Importing this package starts and patches nothing.
"""
from .instance import Instance, NodeIdTaken
from .registry import KEY_PREFIX, Registry, RegistryUnavailable

__all__ = ["KEY_PREFIX", "Instance", "NodeIdTaken", "Registry", "RegistryUnavailable"]
