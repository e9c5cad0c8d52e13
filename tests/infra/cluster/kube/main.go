// Command kube is one multi-call binary holding the upstream Kubernetes components that the
// cluster harness runs, the way k3s links them into one executable: one link step instead of
// six keeps the cold build within a CI budget on a 2-core machine.
//
// The component is chosen by the name the binary is called by (symlinks kube-apiserver,
// kubelet, ... made by cluster.sh) or by the first argument (`kube kubelet --help`):
//
//	kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
//	    upstream k8s.io/kubernetes commands, unchanged
//	etcd
//	    upstream etcd server (go.etcd.io/etcd/server/v3), the version Kubernetes pins
//	pki
//	    certificates, service-account key and kubeconfigs for the harness (pki.go)
//	docker-proxy
//	    Docker API proxy for cri-dockerd that clamps negative OOM score adjustments (dockerproxy.go)
//	cri-cleanup
//	    stops and removes every pod sandbox through the CRI (cricleanup.go)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	_ "time/tzdata" // CronJob time zones, as in the upstream kube-apiserver and kube-controller-manager

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var commands = map[string]func(args []string) int{
	"kube-apiserver":          cobraMain(apiserver.NewAPIServerCommand),
	"kube-controller-manager": cobraMain(controllermanager.NewControllerManagerCommand),
	"kube-scheduler":          cobraMain(func() *cobra.Command { return scheduler.NewSchedulerCommand() }),
	"kubelet":                 cobraMain(func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) }),
	"kube-proxy":              cobraMain(proxy.NewProxyCommand),
	"etcd": func(args []string) int {
		etcdmain.Main(append([]string{"etcd"}, args...))
		return 0
	},
	"pki":          pkiMain,
	"docker-proxy": dockerProxyMain,
	"cri-cleanup":  criCleanupMain,
}

// cobraMain runs an upstream cobra command the way its own main package does.
func cobraMain(newCommand func() *cobra.Command) func(args []string) int {
	return func(args []string) int {
		command := newCommand()
		command.SetArgs(args)
		return cli.Run(command)
	}
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := commands[name]; !ok && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	run, ok := commands[name]
	if !ok {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: kube COMMAND [flags]  (or call it by a COMMAND symlink)\ncommands: %s\n",
			strings.Join(names, ", "))
		os.Exit(2)
	}
	// Upstream components read os.Args[0] for their name in logs and help.
	os.Args = append([]string{name}, args...)
	os.Exit(run(args))
}
