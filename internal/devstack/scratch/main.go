package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/airlockhq/airlock/internal/devstack"
)

func main() {
	opts := devstack.Options{Temporal: os.Getenv("T") != "", Vault: os.Getenv("V") != "", Kube: os.Getenv("K") != "", KeepDir: true, Dir: os.Getenv("DIR"),
		Logf: func(f string, a ...any) { fmt.Printf(time.Now().Format("15:04:05.000 ")+f+"\n", a...) }}
	s, err := devstack.Start(context.Background(), opts)
	if err != nil {
		fmt.Println("ERR:", err)
		os.Exit(1)
	}
	fmt.Println(s.Dir, s.TemporalAddress, s.Kubeconfig)
	if d, _ := time.ParseDuration(os.Getenv("HOLD")); d > 0 {
		time.Sleep(d)
	}
	fmt.Println(s.Stop())
}
