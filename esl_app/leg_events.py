"""`LegEvents`: the events of the channels a call dials (its B-legs), for the call that dialled them.

A call's own outbound socket only gets its own channel's events (`myevents`), and the control
connection takes no channel events at all (it would parse every call's). So one more inbound
connection subscribes to the channel events a dial needs, filtered by FreeSWITCH on the legs' UUIDs:
a dialling call names its legs' UUIDs before it dials them (`origination_uuid`), `watch` adds a
`filter Unique-ID <uuid>` for each (`filter delete` when it stops watching) and hands their events to
the call's queue. With no leg watched, a filter that matches no channel keeps the connection quiet.
A connection that drops loses what happened meanwhile (the bridge's own result, on the A-leg, does
not); the filters are sent again when it is back. Each leg also carries LEG_VARIABLE = the dialling
call's UUID, for whoever reads FreeSWITCH's channels.
"""
import logging

import gevent.queue

from .control import ControlConnection
from .errors import ESLError

log = logging.getLogger(__name__)

LEG_VARIABLE = 'callfork_dial_a'
LEG_EVENTS = ('CHANNEL_PROGRESS', 'CHANNEL_PROGRESS_MEDIA', 'CHANNEL_ANSWER', 'CHANNEL_BRIDGE',
              'CHANNEL_UNBRIDGE', 'CHANNEL_HANGUP_COMPLETE', 'DTMF')
NO_CHANNEL = ('Unique-ID', 'callfork-no-leg')


class LegEvents:
    def __init__(self, host, port, password, **connection_options):
        self._queues = {}       # leg uuid -> the watching call's queue
        self.connection = ControlConnection(host, port, password, events=LEG_EVENTS, on_event=self._on_event,
                                            filters=[NO_CHANNEL], **connection_options)

    def start(self):
        self.connection.start()
        return self

    def stop(self, timeout=5.0):
        self.connection.stop(timeout)

    @property
    def connected(self):
        return self.connection.connected

    def watch(self, leg_uuids):
        """A queue of the events of these legs, until unwatch(leg_uuids). Raises ESLError when the
        connection cannot take the filters (the legs would go unseen)."""
        queue = gevent.queue.Queue()
        for uuid in leg_uuids:
            self._queues[uuid] = queue
        try:
            for uuid in leg_uuids:
                self.connection.add_filter('Unique-ID', uuid)
        except Exception as exc:
            self.unwatch(leg_uuids)
            raise ESLError('cannot follow the dialled legs: %s' % (exc,)) from exc
        return queue

    def unwatch(self, leg_uuids):
        for uuid in leg_uuids:
            self._queues.pop(uuid, None)
            try:
                self.connection.remove_filter('Unique-ID', uuid)
            except Exception as exc:      # the next reconnect sends only the filters still kept
                log.info('filter delete for leg %s failed: %s', uuid, exc)

    def _on_event(self, event):
        queue = self._queues.get(event.get('Unique-ID'))
        if queue is not None:
            queue.put(event)
