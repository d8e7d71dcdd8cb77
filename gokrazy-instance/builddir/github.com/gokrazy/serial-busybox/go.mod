module gokrazy/build/serial-busybox

go 1.26

require (
	github.com/gokrazy/gokrazy v0.0.0-20200501080617-f3445e01a904 // indirect
	github.com/gokrazy/internal v0.0.0-20200407075822-660ad467b7c9 // indirect
	github.com/gokrazy/serial-busybox v0.0.0-20250119153030-ac58ba7574e7 // indirect
	golang.org/x/sys v0.0.0-20200406155108-e3b113bbe6a4 // indirect
)
