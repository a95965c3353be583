// Go runtime check, built with -buildmode=pie.  Prints:
//
//	hello from go
//	argc=N and argv[i]=... for each argument
//	SAMEPROCESS_TEST_VAR=<value> (or "<unset>")
//	goroutine_result=5050 (sum 1..100 over 4 goroutines and a channel)
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("hello from go")
	fmt.Printf("argc=%d\n", len(os.Args))
	for i, arg := range os.Args {
		fmt.Printf("argv[%d]=%s\n", i, arg)
	}
	if value, ok := os.LookupEnv("SAMEPROCESS_TEST_VAR"); ok {
		fmt.Printf("SAMEPROCESS_TEST_VAR=%s\n", value)
	} else {
		fmt.Println("SAMEPROCESS_TEST_VAR=<unset>")
	}

	results := make(chan int)
	for part := 0; part < 4; part++ {
		go func(start int) {
			sum := 0
			for n := start; n <= 100; n += 4 {
				sum += n
			}
			results <- sum
		}(part + 1)
	}
	total := 0
	for part := 0; part < 4; part++ {
		total += <-results
	}
	fmt.Printf("goroutine_result=%d\n", total)
}
