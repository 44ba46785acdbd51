"""mod_conference of the simulated switch: rooms, members, the mixer and the
`conference::maintenance` events. The `conference` app (switch_sim/apps/conference.py) joins a
channel to a room; the `conference` API (switch_sim/apis/conference.py) lists and acts on members.

Pinned to a real FreeSWITCH 1.10.12 by tests/fixtures/fs-captures/conference-mod.json (replayed by
tests/test_sim_conference_truth.py):
* a room is created by its first member (conference-create), reading that member's
  `conference_max_members`, `conference_moh_sound` and `conference_flags` (wait-mod); it is
  destroyed (conference-destroy) when its last member leaves, when a member with `endconf` leaves,
  or when fewer than two remain after a `mintwo` member made the room enforce that minimum;
* member ids count up across rooms; add-member carries Conference-Size after the join, del-member
  after the leave; mute/unmute/deaf/undeaf/kick/hup-member come from the API before the del-member
  of a kick or hup; every member event has the room's headers, Floor, the channel's basic data (no
  variables), then Video, Hear, See, Speak, Talking, Mute-Detect, Hold, Member-ID, Member-Type,
  Member-Ghost, Energy-Level, Current-Energy and Action;
* a member refused because the room is full gets no event at all: its `conference` app returns at
  once and the channel goes on; a kicked or hung-up member's app returns and the channel goes on;
  when the room is destroyed under the others, each is hung up (NORMAL_CLEARING) unless its
  `hangup_after_conference` is false;
* mixing: every 20 ms each member hears the sum of what the others said (their own voice is not
  in it); a muted member is not mixed in, a deaf member hears digital silence; while the room waits
  for a moderator (wait-mod) nobody hears anyone; a member is mixed in only while its frame's energy
  (mean |sample|, FreeSWITCH's Current-Energy) reaches the profile's energy level (100);
* the room's moh plays while a member is alone or the room waits for a moderator, again each time it
  ends: the file of `conference <room> moh <file>`, else the profile's moh-sound (the stock
  `local_stream://moh`, which the captured switch cannot play; a creator's `conference_moh_sound`
  counts only for a profile without one);
* `dist-dtmf`: a member's digits go to the other members (switch_sim/conference_dtmf.py, pinned by
  tests/fixtures/fs-captures/conference-dtmf.json);
* the enter sound plays to the room when a member joins a room that had someone in it (the
  member's `conference_enter_sound`, else the profile's tone), the exit sound when a member leaves
  a room that goes on (`conference_exit_sound`, else the profile's).

* speech (tests/fixtures/fs-captures/conference-speak.json): the profile has no tts-engine (as the
  stock one), so `say` speaks into the room only with `{tts_engine=...,tts_voice=...}` in front of
  its text (speak-text event), and `play say:{...}<text>` too (play-file, no play-file-done);
  `saymember` speaks nothing and succeeds (speak-text-member); a file played to one member ends
  with play-file-member-done;
* recordings (same capture): the file's extension chooses the format (`.mp3` MP3 as mod_shout
  writes it, anything else WAV), written when the recording stops, then stop-recording with
  Other-Recordings, Samples-Out, Samplerate and Milliseconds-Elapsed; a room that ends stops its
  recordings after its members' del-member and before conference-destroy.

Approximated: the mixer runs on its own 20 ms clock and each member's frames cross it through a
queue of a few frames (FreeSWITCH's mux buffers), so a member hears the others 20-60 ms late; the
talking detector has no hangover; speech is switch_sim.media's synthetic voice; recordings hold
the mix of every member and the files played to the room.
"""
from __future__ import annotations

import collections
import logging
import time
import uuid as uuid_mod

import gevent
import numpy as np

from .media import FRAME_SAMPLES, RATE, MediaError, open_source, tts_source

log = logging.getLogger('switch_sim.conference')

SUBCLASS = 'conference::maintenance'
PROFILE = {'domain': '127.0.0.1', 'energy_level': 100, 'moh_sound': 'local_stream://moh',
           'enter_sound': 'tone_stream://%(200,0,500,600,700)',
           'exit_sound': 'tone_stream://%(500,0,300,200,100,50,25)'}
QUEUE_FRAMES = 3
_ZERO = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def _false(value) -> bool:
    return str(value or '').strip().lower() in ('false', 'no', 'off', '0', 'disabled', 'inactive')


def parse_flags(text: str) -> set[str]:
    return {f.strip() for f in (text or '').replace(',', '|').split('|') if f.strip()}


class Member:
    def __init__(self, conference, channel, member_id: int, flags: set[str]):
        self.conference = conference
        self.channel = channel
        self.id = member_id
        self.can_hear = 'deaf' not in flags
        self.can_speak = 'mute' not in flags
        self.moderator = 'moderator' in flags
        self.endconf = 'endconf' in flags
        self.mintwo = 'mintwo' in flags
        self.dist_dtmf = 'dist-dtmf' in flags
        self.skip_dtmf = 'skip-dtmf' in flags
        self.dtmf_out = collections.deque()    # digits other members relayed, sent one per frame
        self.tones = None                # the caller channel's injector of sent digits
        self.talking = False
        self.energy = 0
        self.left = None                 # why the member left: 'kick', 'hup', 'destroyed', 'hangup'
        self.inbox = collections.deque(maxlen=QUEUE_FRAMES)    # what the member said, not mixed yet
        self.outbox = collections.deque(maxlen=QUEUE_FRAMES)   # what the member will hear
        self.files = []                  # sources played to this member only
        self.joined = time.time()

    # the channel's read tap and write source
    def on_read(self, frame) -> None:
        self.inbox.append(_ZERO if frame is None else frame)

    done = False                         # a write source that never ends

    def read(self, n: int):
        return self.outbox.popleft() if self.outbox else np.zeros(n, dtype=np.int16)

    def headers(self) -> list[tuple[str, str]]:
        return [('Video', 'false'), ('Hear', _tf(self.can_hear)), ('See', 'true'),
                ('Speak', _tf(self.can_speak)), ('Talking', _tf(self.talking)), ('Mute-Detect', 'false'),
                ('Hold', 'false'), ('Member-ID', str(self.id)),
                ('Member-Type', 'moderator' if self.moderator else 'member'), ('Member-Ghost', 'false'),
                ('Energy-Level', str(PROFILE['energy_level'])), ('Current-Energy', str(self.energy))]

    def list_flags(self) -> str:
        flags = [name for name, on in (('hear', self.can_hear), ('speak', self.can_speak),
                                       ('talking', self.talking),
                                       ('floor', self.conference.floor_holder is self),
                                       ('moderator', self.moderator)) if on]
        return '|'.join(flags)


def _tf(value: bool) -> str:
    return 'true' if value else 'false'


class Conference:
    def __init__(self, registry, name: str, profile: str, creator):
        self.registry = registry
        self.sim = registry.sim
        self.name = name
        self.profile = profile
        self.uuid = str(uuid_mod.uuid4())
        self.members: list[Member] = []
        self.floor_holder = None
        self.destroyed = False
        self.min = 1                     # once reached it cannot be gone below (mintwo makes it 2)
        self.enforce_min = False
        max_members = creator.get_variable('conference_max_members')
        try:
            self.max_members = int(max_members, 0) if max_members else 0
        except ValueError:
            self.max_members = 0
        if self.max_members in (1,) or self.max_members < 0:      # FreeSWITCH refuses 1 and negatives
            self.max_members = 0
        self.wait_mod = 'wait-mod' in parse_flags(creator.get_variable('conference_flags'))
        # the profile's moh-sound wins over the creator's conference_moh_sound (read only when the
        # profile has none); the stock profile's local_stream://moh cannot be played
        self.moh_sound = PROFILE['moh_sound'] or creator.get_variable('conference_moh_sound')
        self.tmp_moh_sound = None        # `conference <room> moh <file>`
        self._moh_failed = set()
        self.files = []                  # (source, path) played to the whole room
        self.created = time.time()
        self.moh = None
        self.recordings = {}             # path -> list of frames
        self.fire('conference-create')
        self._mixer = gevent.spawn(self._mix_loop)

    # ------------------------------------------------------------------ events
    def room_headers(self) -> list[tuple[str, str]]:
        return [('Conference-Name', self.name), ('Conference-Domain', PROFILE['domain']),
                ('Conference-Size', str(len(self.members))), ('Conference-Ghosts', '0'),
                ('Conference-Profile-Name', self.profile), ('Conference-Unique-ID', self.uuid)]

    def fire(self, action: str, extra=()) -> None:
        ev = self.sim.events.new('CUSTOM', subclass=SUBCLASS)
        for key, value in self.room_headers() + [('Action', action)] + list(extra):
            ev.add(key, value)
        self.sim.deliver(ev)

    def fire_member(self, member: Member, action: str, extra=()) -> None:
        pre = self.room_headers() + [('Floor', _tf(self.floor_holder is member))]
        member.channel.fire_event('CUSTOM', member.headers() + [('Action', action)] + list(extra),
                                  subclass=SUBCLASS, with_variables=False, pre_headers=pre)

    # ------------------------------------------------------------------ membership
    @property
    def full(self) -> bool:
        return bool(self.max_members) and len(self.members) >= self.max_members

    def add(self, channel, flags: set[str]) -> Member:
        member = Member(self, channel, self.registry.next_member_id(), flags)
        had_members = bool(self.members)
        self.members.append(member)
        if member.mintwo:
            self.min = 2
        if self.min and len(self.members) >= self.min:
            self.enforce_min = True
        if self.wait_mod and member.moderator:
            self.wait_mod = False
        if self.floor_holder is None and member.can_speak:
            self.floor_holder = member
        self.fire_member(member, 'add-member')
        if had_members:
            sound = channel.get_variable('conference_enter_sound') or PROFILE['enter_sound']
            self.play(sound)
        return member

    def remove(self, member: Member, why: str) -> None:
        """The member leaves (its app returns); the room goes on, or is destroyed."""
        if member not in self.members:
            return
        if member.left is None:
            member.left = why
        self.members.remove(member)
        if self.floor_holder is member:
            self.floor_holder = None
        destroy = member.endconf or not self.members or (self.enforce_min and len(self.members) < self.min)
        if not destroy and why != 'destroyed':
            sound = member.channel.get_variable('conference_exit_sound') or PROFILE['exit_sound']
            self.play(sound)
        self.fire_member(member, 'del-member')
        if destroy and why != 'destroyed':
            self.destroy()

    def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        for member in list(reversed(self.members)):
            member.left = member.left or 'destroyed'
            channel = member.channel
            if not _false(channel.get_variable('hangup_after_conference')):
                channel.hangup('NORMAL_CLEARING')
            self.remove(member, 'destroyed')
        for path in list(self.recordings):
            self.stop_recording(path)
        self._mixer.kill(block=False)
        self.registry.rooms.pop(self.name, None)
        self.fire('conference-destroy')

    def find(self, member_id: int):
        for member in self.members:
            if member.id == member_id:
                return member
        return None

    def newest_first(self) -> list[Member]:
        return list(reversed(self.members))

    # ------------------------------------------------------------------ actions (the API's)
    def set_mute(self, member: Member, muted: bool) -> None:
        member.can_speak = not muted
        if muted:
            member.talking = False
        self.fire_member(member, 'mute-member' if muted else 'unmute-member')

    def set_deaf(self, member: Member, deaf: bool) -> None:
        member.can_hear = not deaf
        self.fire_member(member, 'deaf-member' if deaf else 'undeaf-member')

    def kick(self, member: Member, action: str = 'kick') -> None:
        """kick or hup: the event now, the del-member when the member's app sees it."""
        member.left = action
        self.fire_member(member, '%s-member' % action)

    def play(self, path: str, member: Member | None = None) -> bool:
        try:
            src = open_source(path, self.sim.media, {})
        except MediaError as exc:
            log.warning('conference %s: cannot play %s: %s', self.name, path, exc)
            return False
        if member is None:
            self.files.append((src, path))
            self.fire('play-file', [('File', path), ('Async', 'false')])
        else:
            member.files.append((src, path))
            self.fire_member(member, 'play-file-member', [('File', path)])
        return True

    def say(self, engine: str, voice: str, text: str) -> bool:
        """Speech into the room (conference_say); False when the engine or voice cannot speak."""
        try:
            src = tts_source(engine, voice, text)
        except MediaError as exc:
            log.warning('conference %s: cannot speak: %s', self.name, exc)
            return False
        self.files.append((src, None))
        return True

    def start_recording(self, path: str) -> None:
        self.recordings[path] = []
        self.fire('start-recording', [('Path', path)])

    def stop_recording(self, path: str) -> bool:
        """The recording's file is written (MP3 for `.mp3`, else WAV), then stop-recording."""
        frames = self.recordings.pop(path, None)
        if frames is None:
            return False
        samples = np.concatenate(frames) if frames else _ZERO[:0]
        try:
            import soundfile
            if path.lower().endswith('.mp3'):
                soundfile.write(path, samples, RATE, format='MP3')
            else:
                soundfile.write(path, samples, RATE, subtype='PCM_16', format='WAV')
        except Exception as exc:
            log.error('conference %s: cannot write %s: %s', self.name, path, exc)
        self.fire('stop-recording', [('Path', path), ('Other-Recordings', _tf(bool(self.recordings))),
                                     ('Samples-Out', str(len(samples))), ('Samplerate', str(RATE)),
                                     ('Milliseconds-Elapsed', str(len(samples) // (RATE // 1000)))])
        return True

    # ------------------------------------------------------------------ the mixer
    def _mix_loop(self) -> None:
        deadline = time.monotonic()
        while not self.destroyed:
            deadline += 0.02
            delay = deadline - time.monotonic()
            if delay < -1.0:
                deadline = time.monotonic()
            gevent.sleep(max(0.0, delay))
            try:
                self._mix_once()
            except Exception:
                log.exception('conference %s: mixer failed', self.name)

    def _moh(self) -> None:
        """The room's moh (the API's `moh <file>`, else the profile's) plays, again each time it
        ends, while one member is alone or the room waits for a moderator; it stops when that is over."""
        sound = self.tmp_moh_sound or self.moh_sound
        wanted = bool(sound) and bool(self.members) and (len(self.members) == 1 or self.wait_mod)
        if self.moh is not None and (not wanted or self.moh[0].done or self.moh[1] != sound):
            if self.moh in self.files:
                self.files.remove(self.moh)
            self.moh = None
        if wanted and self.moh is None and sound not in self._moh_failed:
            try:
                self.moh = (open_source(sound, self.sim.media, {}), sound)
            except MediaError as exc:
                log.warning('conference %s: cannot play moh %s: %s', self.name, sound, exc)
                self._moh_failed.add(sound)
                return
            self.files.append(self.moh)

    def _pull_files(self, files, member: Member | None = None) -> np.ndarray | None:
        acc = None
        for item in list(files):
            src, path = item
            data = src.read(FRAME_SAMPLES).astype(np.int32)
            acc = data if acc is None else acc + data
            if src.done:
                files.remove(item)
                if path is None:             # speech: no event at its end
                    continue
                if member is not None:
                    self.fire_member(member, 'play-file-member-done', [('File', path)])
                else:
                    self.fire('play-file-done', [('File', path)])
        return acc

    def _mix_once(self) -> None:
        spoken = {}
        for member in list(self.members):
            frame = member.inbox.popleft() if member.inbox else _ZERO
            energy = int(np.mean(np.abs(frame.astype(np.int32)))) if len(frame) else 0
            member.energy = energy
            talking = energy >= PROFILE['energy_level'] and member.can_speak
            if talking and not member.talking:
                member.talking = True
                self.fire_member(member, 'start-talking')
            elif not talking and member.talking:
                member.talking = False
                self.fire_member(member, 'stop-talking')
            if talking and not self.wait_mod:
                spoken[member.id] = frame.astype(np.int32)
        self._moh()
        room_files = self._pull_files(self.files)
        total = sum(spoken.values()) if spoken else None
        for path, frames in self.recordings.items():
            mix = np.zeros(FRAME_SAMPLES, dtype=np.int32)
            if total is not None:
                mix = mix + total
            if room_files is not None:
                mix = mix + room_files
            frames.append(np.clip(mix, -32768, 32767).astype(np.int16))
        for member in list(self.members):
            out = np.zeros(FRAME_SAMPLES, dtype=np.int32)
            if total is not None:
                out = out + total - spoken.get(member.id, 0)
            if room_files is not None:
                out = out + room_files
            own = self._pull_files(member.files, member)
            if own is not None:
                out = out + own
            if not member.can_hear:
                out[:] = 0
            member.outbox.append(np.clip(out, -32768, 32767).astype(np.int16))


class Conferences:
    """The rooms of one simulator (`registry(sim)`), by name; member ids count up across them."""

    def __init__(self, sim):
        self.sim = sim
        self.rooms: dict[str, Conference] = {}
        self._member_id = 0

    def next_member_id(self) -> int:
        self._member_id += 1
        return self._member_id

    def get(self, name: str):
        return self.rooms.get(name)

    def get_or_create(self, name: str, profile: str, channel) -> Conference:
        room = self.rooms.get(name)
        if room is None or room.destroyed:
            room = Conference(self, name, profile, channel)
            self.rooms[name] = room
        return room


def registry(sim) -> Conferences:
    """The simulator's conference registry (made on first use)."""
    rooms = getattr(sim, 'conferences', None)
    if rooms is None:
        rooms = sim.conferences = Conferences(sim)
    return rooms
