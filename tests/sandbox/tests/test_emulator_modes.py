"""replace / wiretap / ingest in the emulator, per facts sheet section 5 ("Sibling commands"), sections 0 (the
versions that bring them and their --namespace), 3 (list filters and keys) and 6 (leave takes their names).

Where the sheet is UNVERIFIED (how status and list mark the mode), each knob value is checked for its shape.
"""
import pytest

CONNECT = ('connect', '-n', 'app')
JSON = ('--output', 'json')


@pytest.fixture
def manager(tp):
    tp.ensure_manager('2.24.0')
    yield tp
    tp.remove_agents()


def workloads(tp, version, *flags):
    result = tp.run(version, 'list', '-n', 'app', *flags, *JSON)
    assert result.rc == 0, result
    return {w['name']: w for w in result.json()['stdout']}


@pytest.mark.parametrize('command', ['ingest', 'replace', 'wiretap'])
def test_commands_are_unknown_before_their_version(tp, command):
    # the sandbox's only client older than 2.21 (ingest), 2.22 (replace) and 2.23 (wiretap) is 2.20.2
    result = tp.run('2.20.2', command, 'fresh-app')
    assert result.rc == 1
    assert result.err.startswith(f'telepresence: error: unknown command "{command}" for "telepresence"')


def test_replace_takes_container_ports_and_no_workload_flag(manager):
    tp = manager
    assert tp.run('2.24.0', *CONNECT).rc == 0
    assert 'unknown flag: --workload' in tp.run('2.24.0', 'replace', 'fresh-app', '--workload', 'x').err
    assert 'unknown flag: --service' in tp.run('2.24.0', 'replace', 'fresh-app', '--service', 'x').err
    bad = tp.run('2.24.0', 'replace', 'fresh-app', '--port', '8200:nope', '--mount=false', *JSON, '--detailed-output')
    assert bad.rc == 1 and 'no container port named or numbered "nope"' in bad.json()['err']
    # the seeded container port is named after the Service port (http 8080)
    result = tp.run('2.24.0', 'replace', 'fresh-app', '--port', '8200:8080', '--mount=false', *JSON,
                    '--detailed-output')
    assert result.rc == 0, result
    info = result.json()
    assert (info['name'], info['disposition'], info['target_port'], info['port_id'], info['replace']) == \
        ('fresh-app', 'ACTIVE', 8200, '8080', True)
    listed = workloads(tp, '2.24.0', '--replacements')['fresh-app']['intercept_info'][0]
    assert listed['spec']['replace'] is True and 'wiretap' not in listed['spec'] and listed['disposition'] == 1
    assert workloads(tp, '2.24.0', '--intercepts') == {}        # the filter is per kind (facts §3)
    status = tp.run('2.24.0', 'status', *JSON).json()['user_daemon']
    assert [i['name'] for i in status['replacements']] == ['fresh-app'] and 'intercepts' not in status
    again = tp.run('2.24.0', 'intercept', 'fresh-app', '--port', '8201:http', '--mount=false', *JSON,
                   '--detailed-output')
    assert again.rc == 1 and 'Intercept with name "fresh-app" already exists' in again.json()['err']
    assert tp.run('2.24.0', 'leave', 'fresh-app').rc == 0
    assert tp.state()['intercepts'] == []


def test_wiretap_is_listed_as_a_wiretap(manager):
    tp = manager
    assert tp.run('2.24.0', *CONNECT).rc == 0
    result = tp.run('2.24.0', 'wiretap', 'tap', '--workload', 'fresh-app', '--port', '8202:http', '--mount=false',
                    *JSON, '--detailed-output')
    assert result.rc == 0, result
    assert result.json()['wiretap'] is True
    listed = workloads(tp, '2.24.0', '--wiretaps')['fresh-app']['intercept_info'][0]
    assert (listed['spec']['name'], listed['spec']['wiretap'], listed['spec']['target_port']) == ('tap', True, 8202)
    assert [i['name'] for i in tp.run('2.24.0', 'status', *JSON).json()['user_daemon']['wiretaps']] == ['tap']
    assert tp.state()['intercepts'][0]['mode'] == 'wiretap'
    assert 'unknown flag: --to-pod' in tp.run('2.24.0', 'wiretap', 'x', '--to-pod', '8080').err


def test_knobs_for_the_unverified_shapes(manager):
    tp = manager
    tp.knobs(status_engagements='intercepts', list_engagement_mode='none')
    assert tp.run('2.24.0', *CONNECT).rc == 0
    assert tp.run('2.24.0', 'wiretap', 'tap', '--workload', 'fresh-app', '--port', '8203:http', '--mount=false',
                  *JSON, '--detailed-output').rc == 0
    spec = workloads(tp, '2.24.0', '--wiretaps')['fresh-app']['intercept_info'][0]['spec']
    assert 'wiretap' not in spec and 'replace' not in spec
    user = tp.run('2.24.0', 'status', *JSON).json()['user_daemon']
    assert [i['name'] for i in user['intercepts']] == ['tap'] and 'wiretaps' not in user


def test_ingest_writes_the_env_file_and_is_left_by_workload(manager, tmp_path):
    tp = manager
    assert tp.run('2.24.0', *CONNECT).rc == 0
    assert 'unknown flag: --port' in tp.run('2.24.0', 'ingest', 'secret-app', '--port', '1').err
    assert 'unknown flag: --detailed-output' in tp.run('2.24.0', 'ingest', 'secret-app', '--detailed-output').err
    assert 'unknown flag: --namespace' in tp.run('2.24.0', 'ingest', 'secret-app', '--namespace', 'app').err
    env_file = tmp_path / 'ingest.env'
    result = tp.run('2.24.0', 'ingest', 'secret-app', '--mount=false', '--env-file', str(env_file), *JSON)
    assert (result.rc, result.out) == (0, '')          # 2.23+: --output json silences the progress output
    assert f'API_TOKEN={tp.env["TP_SANDBOX_SECRET"]}' in env_file.read_text().splitlines()
    listed = workloads(tp, '2.24.0', '--ingests')
    assert list(listed) == ['secret-app'] and listed['secret-app']['ingest_info'][0]['container'] == 'secret-app'
    assert tp.run('2.24.0', 'status', *JSON).json()['user_daemon']['ingests'][0]['workload'] == 'secret-app'
    assert tp.state()['intercepts'] == []               # no traffic engagement
    assert tp.run('2.24.0', 'leave', 'secret-app').rc == 0
    gone = tp.run('2.24.0', 'leave', 'secret-app')
    assert gone.err == 'telepresence leave: error: Found no replace, intercept, or ingest named "secret-app"\n'


def test_namespace_flags_per_version(manager):
    tp = manager
    assert 'unknown flag: --namespace' in tp.run('2.25.0', 'replace', 'fresh-app', '--namespace', 'app').err
    assert tp.run('2.29.0', *CONNECT).rc == 0
    result = tp.run('2.29.0', 'replace', 'fresh-app', '--namespace', 'app', '--port', '8204:http', '--mount=false',
                    '--format', 'json', '--detailed-output')
    assert result.rc == 0, result
    ingest = tp.run('2.29.0', 'ingest', 'web-only', '--namespace', 'app', '--mount=false', '--format', 'json')
    assert ingest.rc == 0 and ingest.json()['workload'] == 'web-only'
    assert tp.run('2.29.0', 'leave', 'fresh-app', '--namespace', 'app').rc == 0
    assert tp.run('2.29.0', 'leave', 'web-only', '--namespace', 'app').rc == 0
    assert tp.run('2.29.0', 'quit', '-s').rc == 0
