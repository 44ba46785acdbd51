"""load_config: the documented defaults (README, Configuration), TOML file, CALLFORK_<SECTION>_<KEY> overrides (typed),
[[numbers]] with `*` wildcards, and clear errors for unknown keys and bad values."""
import pytest

from esl_app import ConfigError, load_config

DESIGN_DEFAULTS = {       # README, Configuration, literally
    ('freeswitch', 'esl_host'): '127.0.0.1',
    ('freeswitch', 'esl_port'): 8021,
    ('freeswitch', 'esl_password'): 'ClueCon',
    ('server', 'outbound_listen'): '127.0.0.1:8084',
    ('server', 'http_listen'): '127.0.0.1:8080',
    ('server', 'relay_listen'): '127.0.0.1:8090',
    ('server', 'public_url'): 'http://127.0.0.1:8080',
    ('server', 'auth_id'): 'MA_LOCAL',
    ('server', 'auth_token'): '',
    ('server', 'data_dir'): './var',
    ('audio_fork', 'flavor'): 'jambonz',
}


def test_defaults_without_a_file():
    config = load_config(env={})
    for (section, key), value in DESIGN_DEFAULTS.items():
        got = getattr(getattr(config, section), key)
        assert got == value and type(got) is type(value), (section, key)
    assert config.server.allow_private_urls is True
    assert config.audio_fork.l16_byte_order == 'le' and config.audio_fork.extra_headers_mode == 'vobiz'
    assert config.tts.voices == {'WOMAN': 'slt', 'MAN': 'rms'}
    w = config.webhooks
    assert (w.retries, w.backoff_base_s, w.backoff_max_s, w.connect_timeout_s, w.read_timeout_s, w.v3_mode) == \
        (3, 2, 300, 3, 10, 'docs')
    assert (w.retry_mode, w.retry_window_s, w.concurrency, w.per_host_concurrency, w.retention_s,
            w.memory_queue) == ('window', 21600, 64, 8, 259200, 10000)
    assert config.server.db_max_mb == 0
    assert len(config.numbers) == 1
    number = config.numbers[0]
    assert (number.number, number.answer_url, number.answer_method, number.hangup_url, number.fallback_url) == \
        ('*', 'http://127.0.0.1:5000/answer', 'POST', 'http://127.0.0.1:5000/hangup', '')
    assert config.find_number('15551230001') is number
    assert config.server.outbound_address == ('127.0.0.1', 8084)


CONFIG_FILE = '''
[freeswitch]
esl_host = "10.0.0.5"
esl_port = 8021
esl_password = "s3cret"

[server]
http_listen = "0.0.0.0:9000"
allow_private_urls = false

[audio_fork]
flavor = "drachtio"
l16_byte_order = "be"
extra_headers_mode = "plivo"

[tts]
voices = { WOMAN = "kal" }

[webhooks]
retries = 5
backoff_max_s = 12.5

[[numbers]]
number = "*"
answer_url = "http://apps.local/any"

[[numbers]]
number = "1555*"
answer_url = "http://apps.local/us"
l16_byte_order = "le"

[[numbers]]
number = "15551230001"
answer_url = "http://apps.local/exact"
answer_method = "get"
'''


def test_file_and_env_precedence(tmp_path):
    path = tmp_path / 'callfork.toml'
    path.write_text(CONFIG_FILE)
    config = load_config(path, env={})
    assert config.freeswitch.esl_host == '10.0.0.5' and config.freeswitch.esl_password == 's3cret'
    assert config.server.http_listen == '0.0.0.0:9000' and config.server.relay_listen == '127.0.0.1:8090'
    assert config.server.allow_private_urls is False
    assert (config.audio_fork.flavor, config.audio_fork.l16_byte_order, config.audio_fork.extra_headers_mode) == \
        ('drachtio', 'be', 'plivo')
    assert config.tts.voices == {'WOMAN': 'kal', 'MAN': 'rms'}
    assert config.webhooks.retries == 5 and config.webhooks.backoff_max_s == 12.5 and config.webhooks.backoff_base_s == 2
    assert config.find_number('15551230001').answer_url == 'http://apps.local/exact'
    assert config.find_number('+15551230001').answer_method == 'GET'
    assert config.find_number('15559999999').answer_url == 'http://apps.local/us'
    assert config.find_number('4930123').answer_url == 'http://apps.local/any'
    assert config.byte_order_for(config.find_number('15559999999')) == 'le'
    assert config.byte_order_for(config.find_number('4930123')) == 'be'

    env = {'CALLFORK_FREESWITCH_ESL_PORT': '8022', 'CALLFORK_SERVER_HTTP_LISTEN': '127.0.0.1:8181',
           'CALLFORK_AUDIO_FORK_FLAVOR': 'jambonz', 'CALLFORK_SERVER_ALLOW_PRIVATE_URLS': 'true',
           'CALLFORK_WEBHOOKS_BACKOFF_BASE_S': '0.5', 'CALLFORK_TTS_VOICES': 'MAN=kal',
           'CALLFORK_CONFIG': str(path), 'CALLFORK_FS_ESL': '127.0.0.1:8021:ClueCon'}
    config = load_config(env=env)              # path from CALLFORK_CONFIG, env wins over the file
    assert load_config(env={'CALLFORK_WEBHOOKS_RETRY_MODE': 'vobiz'}).webhooks.retry_mode == 'vobiz'
    assert load_config(env={'CALLFORK_SERVER_DB_MAX_MB': '0.5'}).server.db_max_mb == 0.5
    assert config.freeswitch.esl_port == 8022 and type(config.freeswitch.esl_port) is int
    assert config.freeswitch.esl_host == '10.0.0.5'
    assert config.server.http_listen == '127.0.0.1:8181'
    assert config.audio_fork.flavor == 'jambonz'
    assert config.server.allow_private_urls is True
    assert config.webhooks.backoff_base_s == 0.5
    assert config.tts.voices == {'WOMAN': 'slt', 'MAN': 'kal'}
    assert load_config(env={'CALLFORK_AUDIO_FORK_FLAVOR': 'drachtio'}).audio_fork.flavor == 'drachtio'


@pytest.mark.parametrize('text, needle', [
    ('[server]\nhttp_lisen = "1.2.3.4:5"\n', 'http_lisen'),
    ('[serverr]\n', 'serverr'),
    ('[[numbers]]\nnumber = "1"\nanswer_url = "http://x"\nanswr_method = "GET"\n', 'answr_method'),
    ('[freeswitch]\nesl_port = "8021"\n', 'freeswitch.esl_port'),
    ('[audio_fork]\nflavor = "other"\n', 'audio_fork.flavor'),
    ('[server]\nhttp_listen = "nohostport"\n', 'server.http_listen'),
    ('[[numbers]]\nanswer_url = "http://x"\n', 'number'),
    ('not toml = = =', 'callfork.toml'),
])
def test_file_errors_name_the_key(tmp_path, text, needle):
    path = tmp_path / 'callfork.toml'
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert needle in str(info.value)


@pytest.mark.parametrize('env, needle', [
    ({'CALLFORK_SERVER_HTTP_LISTN': 'x'}, 'http_listn'),
    ({'CALLFORK_FREESWITCH_ESL_PORT': 'eighty'}, 'freeswitch.esl_port'),
    ({'CALLFORK_SERVER_ALLOW_PRIVATE_URLS': 'maybe'}, 'allow_private_urls'),
    ({'CALLFORK_NUMBERS_ANSWER_URL': 'http://x'}, 'CALLFORK_NUMBERS_ANSWER_URL'),
    ({'CALLFORK_CONFIG': '/nonexistent/callfork.toml'}, '/nonexistent/callfork.toml'),
    ({'CALLFORK_WEBHOOKS_RETRY_MODE': 'forever'}, 'webhooks.retry_mode'),
    ({'CALLFORK_WEBHOOKS_PER_HOST_CONCURRENCY': '0'}, 'webhooks.per_host_concurrency'),
    ({'CALLFORK_WEBHOOKS_RETRY_WINDOW_S': '-1'}, 'webhooks.retry_window_s'),
    ({'CALLFORK_SERVER_DB_MAX_MB': '-5'}, 'server.db_max_mb'),
])
def test_env_errors_name_the_key(env, needle):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert needle in str(info.value)


def test_max_playout_seconds_is_a_positive_number():
    assert load_config(env={}).audio_fork.max_playout_seconds == 60
    assert load_config(env={'CALLFORK_AUDIO_FORK_MAX_PLAYOUT_SECONDS': '10'}).audio_fork.max_playout_seconds == 10
    for bad in ('0', '-5', 'inf', 'ten'):
        with pytest.raises(ConfigError):
            load_config(env={'CALLFORK_AUDIO_FORK_MAX_PLAYOUT_SECONDS': bad})
