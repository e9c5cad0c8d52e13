"""What edgecast's tests and benchmarks share.

Everything here drives real components: ``edgecast serve`` processes over HTTP
(:mod:`.predictor`), ``ansible-playbook`` through ansible-runner (:mod:`.playbook`), a load
client in its own process (:mod:`.load_client`), Docker containers (:mod:`.docker`), Molecule
(:mod:`.molecule`) and the test cluster (:mod:`.cluster`). The one fake, a Kubernetes API
server, is named as such (:mod:`.fake_kube_api`).
"""
