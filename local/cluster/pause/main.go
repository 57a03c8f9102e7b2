// Command pause is the local cluster's sandbox (pause) image: PID 1 of
// every pod, holding its namespaces. It does what Kubernetes' pause.c
// does: reap the zombies the pod's processes leave (it is their init),
// exit 0 on SIGINT or SIGTERM, and sleep otherwise. It is built by ko
// from source (local/cluster/images.sh) because no image registry on the
// internet is reachable here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		os.Stderr.WriteString("pause: warning: not PID 1\n")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for { // reap every child that has exited
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
