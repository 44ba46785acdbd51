"""What the cluster keeps of a REST call while it is being placed (callfork/originate.py places it),
so that other nodes can reach it and, should this node die before the call reaches callfork, end it.
Nothing here outside a cluster ([cluster] redis_url): every method then returns at once.

- The registry entry (cluster/registry.py): the call is in the live registry from the moment it is
  placed (`placed`: status `queued`, `placing: true`, its request UUID), `ringing` once a Twilio
  call's channel rings (`ringing`), until it reaches callfork, when the service writes its entry
  again. So a cancel or hang-up sent to another node is carried here (callfork/forwarding.py). The
  entry goes when the originate fails or is cancelled (`not_placed`).
- The hangup hook, with a shared PostgreSQL ([store] postgres_dsn): what the call's end webhook
  needs (`keep_hook`), for the node that closes a dead node's calls (callfork/node_death.py). A
  Twilio call's record is live from the start, so its hook is closed there with its `completed`
  (kept again after each status callback, for its sequence); a Vobiz call has no record yet, so its
  hook says which node is placing it (`placing`), and the closer walks those too. The hook goes
  with the registry entry when the originate fails (`not_placed`).

Writes never block the call: the registry writes from its own greenlet; a store that refuses a
hook is logged with the call UUID and the call goes on.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from verbs import plain_number

log = logging.getLogger("callfork.service")


class PlacingCluster:
    def __init__(self, service):
        self.service = service   # its `cluster` (None on a single node) and `store`

    def _registry(self):
        cluster = getattr(self.service, "cluster", None)
        return cluster.registry if cluster is not None else None

    def _beats(self):
        """The cluster node, when its calls' hooks are kept in a shared store (it has PostgreSQL
        heartbeats); else None."""
        cluster = getattr(self.service, "cluster", None)
        return cluster if cluster is not None and getattr(cluster, "beats", None) is not None else None

    def placed(self, call_uuid: str, variables: dict, answer_url: str) -> None:
        """The originate is about to be sent: the call's registry entry (`variables`: its channel
        variables as callfork/originate.py keeps them)."""
        registry = self._registry()
        if registry is not None:
            registry.call_started(call_uuid, {
                "direction": "outbound", "from_number": plain_number(variables["origination_caller_id_number"]),
                "to_number": plain_number(variables["callfork_to"]), "status": "queued",
                "start_time": datetime.now(timezone.utc).timestamp(), "answer_time": None,
                "answer_url": answer_url, "placing": True, "request_uuid": variables["callfork_request_uuid"]})

    def ringing(self, call_uuid: str) -> None:
        """A Twilio call's channel rings (it is still being placed)."""
        registry = self._registry()
        if registry is not None:
            registry.call_updated(call_uuid, status="ringing")

    def keep_hook(self, call_uuid: str, variables: dict, vobiz_base, twilio_base) -> None:
        """Keep (again) what the call's end webhook needs. `vobiz_base(started)`: a Vobiz call's
        Hangup parameters for a call placed at `started`; `twilio_base()`: a Twilio call's callback
        parameters. Neither is called outside a cluster with a shared store."""
        cluster = self._beats()
        if cluster is None:
            return
        callback = variables.get("status_callback")
        if callback is None:
            started = datetime.now(timezone.utc)
            hook = {"api": "vobiz", "url": variables["callfork_hangup_url"] or variables["callfork_answer_url"],
                    "method": variables["callfork_hangup_method"] or "POST", "signer": "vobiz",
                    "base": vobiz_base(started),
                    "placing": {"node": cluster.node_id, "at": started.timestamp(),
                                "answer_url": variables["callfork_answer_url"]}}
        elif not callback.wants("completed"):
            return
        else:
            hook = {"api": "twilio", "url": callback.url, "method": callback.method, "events": list(callback.events),
                    "sequence": callback.sequence, "base": twilio_base(), "signer": "twilio"}
        try:
            self.service.store.set_hangup_hook(call_uuid, hook)
        except Exception:
            log.exception("call %s: could not keep its hangup hook", call_uuid)

    def not_placed(self, call_uuid: str) -> None:
        """The originate failed or was cancelled: the call never reaches callfork. Its hook and its
        registry entry go (a call that reached callfork was written again by the service)."""
        if self._beats() is not None:
            try:
                self.service.store.forget_hangup_hook(call_uuid)
            except Exception:
                log.exception("call %s: could not drop its hangup hook", call_uuid)
        registry = self._registry()
        if registry is not None:
            registry.call_ended(call_uuid)
