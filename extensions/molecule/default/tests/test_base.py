"""testinfra checks of the base role on the Molecule hosts."""

import pytest


def test_service_account(host):
    user = host.user("hailo")
    assert user.exists
    assert user.uid == 10001
    assert user.group == "hailo"
    assert user.shell == "/usr/sbin/nologin"
    home = host.file("/opt/hailo")
    assert home.is_directory
    assert home.user == "hailo"
    assert home.mode == 0o750


def test_journald_cap(host):
    conf = host.file("/etc/systemd/journald.conf.d/50-hailo-pipeline.conf")
    assert conf.exists
    assert "SystemMaxUse=150M" in conf.content_string
    assert host.service("systemd-journald").is_running
    # The handler restarted journald after the drop-in was written, so the cap is in force.
    started = host.check_output(
        'date -d "$(systemctl show systemd-journald -p ActiveEnterTimestamp --value)" +%s'
    )
    assert int(started) >= int(conf.mtime.timestamp())


def test_timesync_configured_and_enabled(host):
    conf = host.file("/etc/systemd/timesyncd.conf.d/50-hailo-pipeline.conf")
    assert "NTP=ntp.example.internal" in conf.content_string
    assert host.package("systemd-timesyncd").is_installed
    assert host.service("systemd-timesyncd").is_enabled


@pytest.mark.parametrize("timer", ["apt-daily.timer", "apt-daily-upgrade.timer"])
def test_apt_timers_active(host, timer):
    svc = host.service(timer)
    assert svc.is_enabled
    assert svc.is_running


def test_unattended_upgrades_security_only(host):
    assert host.package("unattended-upgrades").is_installed
    conf = host.file("/etc/apt/apt.conf.d/52hailo-unattended-upgrades").content_string
    assert "label=Debian-Security" in conf
    assert 'Automatic-Reboot "false"' in conf
    periodic = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    # unattended-upgrades loads the configuration and lists the origins it allows.
    cmd = host.run("unattended-upgrade --dry-run -v 2>&1 | head -20")
    assert "Allowed origins are" in cmd.stdout


def test_base_packages(host):
    for name in ("ca-certificates", "curl", "jq", "python3-apt"):
        assert host.package(name).is_installed
