"""Configuration (README, Configuration): `callfork.toml` read with tomllib, overridden by
`CALLFORK_<SECTION>_<KEY>` environment variables, on top of the loopback defaults.
`load_config(path=None, env=os.environ) -> Config`. Every value is typed (ints stay ints, booleans
are booleans); unknown keys and bad values raise `ConfigError` naming the key."""
import dataclasses
import fnmatch
import json
import os
import re
import tomllib
from dataclasses import dataclass, field

from .errors import ConfigError

ENV_PREFIX = 'CALLFORK_'
ENV_NOT_KEYS = {'CALLFORK_CONFIG'}     # the config path itself


def _listen(value, key):
    host, sep, port = str(value).rpartition(':')
    if not sep or not host:
        raise ConfigError('%s: expected "host:port", got %r' % (key, value))
    try:
        port_n = int(port)
    except ValueError:
        raise ConfigError('%s: bad port in %r' % (key, value)) from None
    if not 0 <= port_n <= 65535:
        raise ConfigError('%s: port out of range in %r' % (key, value))
    return str(value)


def split_listen(value):
    """A `host:port` the config accepted (`_listen`) as (host, port): the one parser of them."""
    host, _, port = value.rpartition(':')
    return host.strip('[]'), int(port)


@dataclass(frozen=True)
class FreeswitchConfig:
    esl_host: str = '127.0.0.1'
    esl_port: int = 8021
    esl_password: str = 'ClueCon'
    # dial string for REST-originated calls; `{to}` is replaced by the destination number
    originate_dialstring: str = 'loopback/{to}/default'
    # dial string for <Dial><User> (and SIP URIs elsewhere); `{uri}` is replaced by the sip: URI
    sip_dialstring: str = 'sofia/internal/{uri}'


@dataclass(frozen=True)
class ServerConfig:
    outbound_listen: str = '127.0.0.1:8084'
    http_listen: str = '127.0.0.1:8080'
    relay_listen: str = '127.0.0.1:8090'
    public_url: str = 'http://127.0.0.1:8080'
    auth_id: str = 'MA_LOCAL'
    auth_token: str = ''
    data_dir: str = './var'
    allow_private_urls: bool = True
    db_max_mb: float = 0                 # cap on the SQLite file (0: none); past it, as a full disk
    # the HTTP server (callfork/http_server.py): connection cap, request-head deadline, body limit,
    # and the file descriptors it leaves to calls
    http_max_connections: int = 1000
    http_idle_timeout_s: float = 20
    http_max_body_bytes: int = 1048576
    fd_reserve: int = 256
    # /recordings/<id> without credentials, as Twilio serves a RecordingUrl unless an account turns
    # on HTTP auth for media (the ids are random UUIDs); default: the API's credentials
    recordings_public: bool = False
    # processes of `callfork serve` on one FreeSWITCH (callfork/workers.py); more than one needs the
    # [cluster] and [store] servers, which they share
    workers: int = 1

    @property
    def outbound_address(self):
        return split_listen(self.outbound_listen)

    @property
    def http_address(self):
        return split_listen(self.http_listen)

    @property
    def relay_address(self):
        return split_listen(self.relay_listen)


@dataclass(frozen=True)
class AudioForkConfig:
    flavor: str = 'jambonz'
    l16_byte_order: str = 'le'
    extra_headers_mode: str = 'vobiz'
    max_playout_seconds: float = 60        # app audio a stream holds ahead of the caller; more is dropped


@dataclass(frozen=True)
class ClusterConfig:
    # Redis: the live registry (which node owns which call, stream, conference; node heartbeats) and
    # messages between nodes. Empty: a single node, nothing shared
    redis_url: str = ''
    node_id: str = ''                   # empty: hostname-pid, chosen at start
    # the base URL other nodes reach this node's HTTP API at (REST requests carried to a call's
    # owner); empty: http://<http_listen>
    advertise_url: str = ''
    heartbeat_s: float = 2.0            # how often a node renews its registration
    node_ttl_s: float = 10.0            # a node silent this long is dead: its calls and webhooks are taken over


@dataclass(frozen=True)
class StoreConfig:
    # PostgreSQL for calls, streams, recordings and the webhook outbox, shared by every node
    # (postgresql://user:password@host:port/database); empty: SQLite in data_dir, one process only
    postgres_dsn: str = ''
    lease_s: float = 30.0               # how long a node's claim on a webhook delivery holds


@dataclass(frozen=True)
class TTSConfig:
    voices: dict = field(default_factory=lambda: {'WOMAN': 'slt', 'MAN': 'rms'})


@dataclass(frozen=True)
class WebhooksConfig:
    # `window`: retry each webhook for retry_window_s; `vobiz`: `retries` retries, as Vobiz does
    retry_mode: str = 'window'
    retry_window_s: float = 21600
    retries: int = 3
    backoff_base_s: float = 2
    backoff_max_s: float = 300
    connect_timeout_s: float = 3
    read_timeout_s: float = 10
    v3_mode: str = 'docs'
    concurrency: int = 64
    per_host_concurrency: int = 8
    retention_s: float = 259200          # delivered webhooks are deleted after this (3 days)
    memory_queue: int = 10000            # webhooks kept in memory while the database refuses writes


@dataclass(frozen=True)
class NumberConfig:
    number: str = '*'
    answer_url: str = 'http://127.0.0.1:5000/answer'
    answer_method: str = 'POST'
    hangup_url: str = 'http://127.0.0.1:5000/hangup'
    hangup_method: str = 'POST'
    fallback_url: str = ''
    fallback_method: str = 'POST'
    l16_byte_order: str | None = None      # None: the [audio_fork] value
    # the API its app speaks: 'vobiz' (Vobiz XML or SWML, Vobiz webhooks and signatures) or 'twilio'
    # (TwiML, Twilio's webhook parameters and X-Twilio-Signature; hangup_url is its StatusCallback)
    api: str = 'vobiz'

    def matches(self, destination):
        return _number_matches(self.number, destination)


SECTIONS = {
    'freeswitch': FreeswitchConfig,
    'server': ServerConfig,
    'audio_fork': AudioForkConfig,
    'tts': TTSConfig,
    'webhooks': WebhooksConfig,
    'cluster': ClusterConfig,
    'store': StoreConfig,
}
CHOICES = {
    ('audio_fork', 'flavor'): ('jambonz', 'drachtio'),
    ('audio_fork', 'l16_byte_order'): ('le', 'be'),
    ('audio_fork', 'extra_headers_mode'): ('vobiz', 'plivo'),
    ('numbers', 'l16_byte_order'): ('le', 'be', None),
    ('numbers', 'answer_method'): ('GET', 'POST'),
    ('numbers', 'hangup_method'): ('GET', 'POST'),
    ('numbers', 'fallback_method'): ('GET', 'POST'),
    ('numbers', 'api'): ('vobiz', 'twilio'),
    ('webhooks', 'retry_mode'): ('window', 'vobiz'),
}
POSITIVE_KEYS = {('server', 'workers'), ('cluster', 'heartbeat_s'), ('cluster', 'node_ttl_s'), ('store', 'lease_s'),
                 ('server', 'http_max_connections'), ('server', 'http_idle_timeout_s'),
                 ('server', 'http_max_body_bytes'), ('audio_fork', 'max_playout_seconds')}
LISTEN_KEYS = {('server', 'outbound_listen'), ('server', 'http_listen'), ('server', 'relay_listen')}
TTS_VOICE_NAMES = ('WOMAN', 'MAN')


def _normalize_number(number):
    return number[1:] if number.startswith('+') else number


def _number_matches(pattern, destination):
    pattern = _normalize_number(pattern)
    destination = _normalize_number(destination or '')
    if '*' not in pattern:
        return pattern == destination
    # only `*` is a wildcard: neutralise the other fnmatch metacharacters
    safe = re.sub(r'([?\[\]])', r'[\1]', pattern)
    return fnmatch.fnmatchcase(destination, safe)


@dataclass(frozen=True)
class Config:
    freeswitch: FreeswitchConfig = field(default_factory=FreeswitchConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    audio_fork: AudioForkConfig = field(default_factory=AudioForkConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    numbers: list = field(default_factory=lambda: [NumberConfig()])
    source: str | None = None

    def find_number(self, destination):
        """The [[numbers]] entry for `destination`: an exact match first, then the wildcard
        pattern with the most literal characters (file order breaks ties); None if none."""
        exact = [n for n in self.numbers if '*' not in n.number and n.matches(destination)]
        if exact:
            return exact[0]
        wild = [(i, n) for i, n in enumerate(self.numbers) if '*' in n.number and n.matches(destination)]
        if not wild:
            return None
        wild.sort(key=lambda item: (-len(item[1].number.replace('*', '')), item[0]))
        return wild[0][1]

    def byte_order_for(self, number_config):
        """L16 byte order on the app side: the number's own, else [audio_fork]'s."""
        return (number_config.l16_byte_order if number_config and number_config.l16_byte_order
                else self.audio_fork.l16_byte_order)


# -- typing -------------------------------------------------------------------------------------
def _field_types(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(section, key, value, type_hint, from_env):
    where = '%s.%s' % (section, key)
    if section == 'tts' and key == 'voices':
        return _coerce_voices(value, where, from_env)
    hint = type_hint if isinstance(type_hint, str) else getattr(type_hint, '__name__', str(type_hint))
    hint = hint.replace(' | None', '')
    try:
        if hint == 'bool':
            if isinstance(value, bool):
                return value
            if from_env and isinstance(value, str) and value.strip().lower() in ('1', 'true', 'yes', 'on'):
                return True
            if from_env and isinstance(value, str) and value.strip().lower() in ('0', 'false', 'no', 'off'):
                return False
            raise ValueError('expected true or false')
        if hint == 'int':
            if isinstance(value, bool):
                raise ValueError('expected an integer')
            if isinstance(value, int):
                return value
            if from_env and isinstance(value, str):
                return int(value.strip())
            raise ValueError('expected an integer')
        if hint == 'float':
            if isinstance(value, bool):
                raise ValueError('expected a number')
            if isinstance(value, (int, float)):
                return value
            if from_env and isinstance(value, str):
                text = value.strip()
                return int(text) if re.fullmatch(r'[+-]?\d+', text) else float(text)
            raise ValueError('expected a number')
        if hint == 'str':
            if isinstance(value, str):
                return value
            raise ValueError('expected a string')
    except ValueError as exc:
        raise ConfigError('%s: %s, got %r' % (where, exc, value)) from None
    raise ConfigError('%s: unsupported type %s' % (where, hint))


def _coerce_voices(value, where, from_env):
    if from_env and isinstance(value, str):
        text = value.strip()
        if text.startswith('{'):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigError('%s: bad JSON: %s' % (where, exc)) from None
        else:      # WOMAN=slt,MAN=rms
            pairs = [p for p in text.split(',') if p.strip()]
            value = {}
            for pair in pairs:
                k, sep, v = pair.partition('=')
                if not sep:
                    raise ConfigError('%s: expected NAME=voice pairs, got %r' % (where, pair))
                value[k.strip()] = v.strip()
    if not isinstance(value, dict):
        raise ConfigError('%s: expected a table like {WOMAN = "slt", MAN = "rms"}' % where)
    voices = dict(TTSConfig().voices)
    for k, v in value.items():
        name = str(k).upper()
        if name not in TTS_VOICE_NAMES:
            raise ConfigError('%s: unknown voice %r (known: %s)' % (where, k, ', '.join(TTS_VOICE_NAMES)))
        if not isinstance(v, str) or not v:
            raise ConfigError('%s.%s: expected a flite voice name, got %r' % (where, k, v))
        voices[name] = v
    return voices


def _check_value(section, key, value):
    where = '%s.%s' % (section, key)
    choices = CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError('%s: must be one of %s, got %r' % (where, ', '.join(c for c in choices if c), value))
    if (section, key) in LISTEN_KEYS:
        _listen(value, where)
    if section == 'freeswitch' and key == 'esl_port' and not 0 < value <= 65535:
        raise ConfigError('%s: port out of range: %r' % (where, value))
    if section == 'freeswitch' and key == 'originate_dialstring' and '{to}' not in value:
        raise ConfigError('%s: must contain {to} (the destination number), got %r' % (where, value))
    if section == 'freeswitch' and key == 'sip_dialstring' and '{uri}' not in value:
        raise ConfigError('%s: must contain {uri} (the sip: URI), got %r' % (where, value))
    if (section, key) in POSITIVE_KEYS and not 0 < value < float('inf'):
        raise ConfigError('%s: must be a positive finite number: %r' % (where, value))
    if section == 'server' and key == 'fd_reserve' and value < 0:
        raise ConfigError('%s: must not be negative: %r' % (where, value))
    if section == 'webhooks' and not isinstance(value, str) and value < 0:
        raise ConfigError('%s: must not be negative: %r' % (where, value))
    if (section, key) in (('webhooks', 'concurrency'), ('webhooks', 'per_host_concurrency')) and value < 1:
        raise ConfigError('%s: must be at least 1: %r' % (where, value))
    if (section, key) == ('server', 'db_max_mb') and value < 0:
        raise ConfigError('%s: must not be negative: %r' % (where, value))


def _build_section(section, values, from_env_keys=()):
    cls = SECTIONS[section]
    fields = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError('unknown config key %r in [%s] (known: %s)' % (key, section, ', '.join(fields)))
        coerced = _coerce(section, key, value, fields[key].type, key in from_env_keys)
        _check_value(section, key, coerced)
        kwargs[key] = coerced
    return cls(**kwargs)


def _build_number(index, values):
    fields = _field_types(NumberConfig)
    if not isinstance(values, dict):
        raise ConfigError('[[numbers]] entry %d: expected a table' % (index + 1))
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError('unknown config key %r in [[numbers]] entry %d (known: %s)'
                              % (key, index + 1, ', '.join(fields)))
        where = 'numbers[%d].%s' % (index, key)
        if not isinstance(value, str):
            raise ConfigError('%s: expected a string, got %r' % (where, value))
        if key.endswith('_method'):
            value = value.upper()
        if key == 'l16_byte_order':
            value = value.lower()
        choices = CHOICES.get(('numbers', key))
        if choices is not None and value not in choices:
            raise ConfigError('%s: must be one of %s, got %r' % (where, ', '.join(c for c in choices if c), value))
        kwargs[key] = value
    if not kwargs.get('number'):
        raise ConfigError('[[numbers]] entry %d: "number" is required (exact number or "*")' % (index + 1))
    if 'answer_url' not in kwargs:
        raise ConfigError('[[numbers]] entry %d (%s): "answer_url" is required' % (index + 1, kwargs['number']))
    return NumberConfig(**kwargs)


def _env_overrides(env):
    """{section: {key: raw string}} from CALLFORK_<SECTION>_<KEY>; variables of other prefixes
    (e.g. CALLFORK_FS_ESL, the real-FreeSWITCH test switch) are not config keys and are ignored."""
    overrides = {}
    sections = sorted(SECTIONS, key=len, reverse=True)     # AUDIO_FORK before shorter names
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_KEYS:
            continue
        rest = name[len(ENV_PREFIX):]
        if rest.startswith('NUMBERS_'):
            raise ConfigError('%s: [[numbers]] cannot be overridden from the environment; '
                              'edit the config file' % name)
        for section in sections:
            prefix = section.upper() + '_'
            if rest.startswith(prefix):
                key = rest[len(prefix):].lower()
                if key not in _field_types(SECTIONS[section]):
                    raise ConfigError('unknown config key %r in [%s] (from environment variable %s)'
                                      % (key, section, name))
                overrides.setdefault(section, {})[key] = value
                break
    return overrides


def load_config(path=None, env=None):
    """Defaults (README, Configuration) <- TOML file (`path`, else $CALLFORK_CONFIG, else none) <- environment."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get('CALLFORK_CONFIG') or None
    data = {}
    if path is not None:
        try:
            with open(path, 'rb') as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError('config file not found: %s' % path) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError('config file %s: %s' % (path, exc)) from None
        except OSError as exc:
            raise ConfigError('config file %s: %s' % (path, exc)) from None
    for key in data:
        if key not in SECTIONS and key != 'numbers':
            raise ConfigError('unknown config section %r in %s (known: %s, numbers)'
                              % (key, path, ', '.join(SECTIONS)))
    overrides = _env_overrides(env)
    built = {}
    for section in SECTIONS:
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError('[%s] must be a table' % section)
        merged = dict(values)
        merged.update(overrides.get(section, {}))
        built[section] = _build_section(section, merged, from_env_keys=set(overrides.get(section, {})))
    if 'numbers' in data:
        raw_numbers = data['numbers']
        if not isinstance(raw_numbers, list):
            raise ConfigError('numbers must be an array of tables: use [[numbers]]')
        numbers = [_build_number(i, n) for i, n in enumerate(raw_numbers)]
    else:
        numbers = [NumberConfig()]
    return Config(numbers=numbers, source=str(path) if path else None, **built)
