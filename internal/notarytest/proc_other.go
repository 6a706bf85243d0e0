//go:build !linux

package notarytest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
