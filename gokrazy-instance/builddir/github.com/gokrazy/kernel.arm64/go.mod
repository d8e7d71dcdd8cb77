module gokrazy/build/kernel.arm64

go 1.26

require github.com/gokrazy/kernel.arm64 v0.0.0-20260705071517-37841c4d6ff1 // indirect
