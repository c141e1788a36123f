"""The sidecar's local socket API as both ends know it: where the socket is, the header every
request must carry, and the paths. Standard library only: `kubegate credential` imports it.
"""

DEFAULT_SOCKET_PATH = "/var/run/kubegate/kubegate.sock"
SOCKET_ENV = "KUBEGATE_SOCKET"
REQUEST_HEADER = "X-Kubegate-Request"
CREDENTIAL_PATH = "/v1/credential"
EXEC_CREDENTIAL_PATH = "/v1/exec-credential"
KUBECONFIG_PATH = "/v1/kubeconfig"
READY_PATH = "/readyz"
HEALTH_PATH = "/healthz"
