import shutil
import subprocess

import pytest

from stack import nginx_config
from stack.nginx_config import PLACEHOLDERS, NginxSettings


def test_the_template_uses_exactly_the_declared_placeholders():
    text = nginx_config.TEMPLATE.read_text()
    assert set(nginx_config.PLACEHOLDER.findall(text)) == set(PLACEHOLDERS)
    assert set(NginxSettings("1", ["a:1"], nginx_config.TEMPLATE.parent).values()) == set(PLACEHOLDERS)


def test_render_refuses_missing_values():
    with pytest.raises(KeyError):
        nginx_config.render({"LISTEN": "80"})


@pytest.mark.skipif(shutil.which("nginx") is None and not shutil.os.path.exists("/usr/sbin/nginx"),
                    reason="nginx not installed")
def test_nginx_accepts_the_rendered_config(tmp_path):
    settings = NginxSettings("127.0.0.1:18080", ["127.0.0.1:18000", "127.0.0.1:18001"], tmp_path)
    path = nginx_config.write(settings)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    result = subprocess.run([nginx, "-t", "-q", "-c", str(path), "-p", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "server 127.0.0.1:18001" in path.read_text()
