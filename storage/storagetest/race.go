//go:build race

package storagetest

const race = true
