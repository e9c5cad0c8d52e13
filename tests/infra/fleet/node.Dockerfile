# A bare host of the test fleet: Debian bookworm with systemd, reached by Ansible over SSH as the
# unprivileged user "edgecast" with passwordless sudo, as a freshly flashed board or a new cloud VM
# is. Built on local/debian-amd64-systemd:bookworm (tests/infra/base-image.sh amd64 systemd);
# the login key is copied in when a node starts, never baked into the image. site-ca.pem is the
# certificate bundle of the machine that builds it: a site behind a TLS-intercepting proxy trusts
# its CA on every host, and pip is told to use the system bundle, as on the test machine itself.
FROM local/debian-amd64-systemd:bookworm
COPY site-ca.pem /etc/ssl/certs/ca-certificates.crt
RUN printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --shell /bin/bash edgecast \
 && echo "edgecast ALL=(ALL) NOPASSWD: ALL" > /etc/sudoers.d/edgecast \
 && chmod 0440 /etc/sudoers.d/edgecast \
 && install -d -m 0700 -o edgecast -g edgecast /home/edgecast/.ssh \
 && printf 'PasswordAuthentication no\nPermitRootLogin no\nUseDNS no\n' > /etc/ssh/sshd_config.d/edgecast.conf \
 && systemctl enable ssh \
 && rm -f /etc/ssh/ssh_host_*_key* \
 && printf '[Unit]\nDescription=SSH host keys of this node\nBefore=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/ssh-host-keys.service \
 && systemctl enable ssh-host-keys
