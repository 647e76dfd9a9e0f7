package keywords

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/friendgate/friendgate/internal/keywords/keywordstest"
)

// cpuTime is the CPU time this process has used. Benchmarks report it per operation
// besides the wall time, which on a shared machine counts the time other processes ran.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loopMatch(b *testing.B, d *Dictionary, text string) {
	if m, ok := d.Match(text); ok {
		b.Fatalf("the wording matches %+v", m)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	start := cpuTime(b)
	for b.Loop() {
		d.Match(text)
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// wordings are 256-byte friend-request wordings that match none of benchWords: the cost of
// a request that passes, which reads the whole text.
var wordings = map[string]string{
	"mixed": "Hi! I saw your profile in the hiking group and would love to be friends. " +
		"I'm Anna, 28, from Lyon, I work as a nurse. 你好，很高兴认识你！ Message me any " +
		"time, I'm usually online in the evening. ｈａｐｐｙ weekend :)",
	"ascii": "Hello! We met at the conference in Berlin last week, I was the one asking " +
		"about the database migration talk. Would be great to keep in touch and maybe " +
		"swap notes on the project. My team is hiring too, if you know anyone. Cheers, Tom",
	"cjk": "你好，我们上周在北京的会议上见过面，我是问数据库迁移问题的那个人。" +
		"很高兴认识你，希望以后能多交流。我们团队也在招人，有兴趣可以联系我。",
	"fullwidth": "ＨＥＬＬＯ　ｆｒｉｅｎｄ，ｗｅ　ｍｅｔ　ａｔ　ｔｈｅ　ｐａｒｔｙ　ｌａｓｔ　" +
		"ｗｅｅｋ，ａｄｄ　ｍｅ　ｐｌｅａｓｅ　ｓｅｅ　ｙｏｕ　ｓｏｏｎ　ｂｙｅ",
}

func wording(name string) string {
	w := wordings[name]
	for len(w) < 256 {
		w += " " + w
	}
	w = w[:256]
	for !utf8.ValidString(w) {
		w = w[:len(w)-1]
	}
	return w
}

func benchDictionary(b *testing.B, n int) *Dictionary {
	d, err := Compile(all, keywordstest.Words(n)...)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkMatch: a passing 256-byte wording against dictionaries of 100 to 100,000 words,
// every normalisation on; the cost must not follow the dictionary's size.
func BenchmarkMatch(b *testing.B) {
	text := wording("mixed")
	for _, n := range []int{10, 100, 1000, 10000, 100000} {
		b.Run(fmt.Sprintf("words=%d", n), func(b *testing.B) {
			loopMatch(b, benchDictionary(b, n), text)
		})
	}
}

// BenchmarkMatchSmall: a passing 256-byte ASCII wording against a dictionary the size of
// the samples' (a few words, with a full transition table), with the samples' options.
func BenchmarkMatchSmall(b *testing.B) {
	d, err := Compile(all, "add me on", "加微信", "telegram", "whatsapp", "skype", "free gift")
	if err != nil {
		b.Fatal(err)
	}
	if d.ac.next == nil {
		b.Fatal("no transition table: the benchmark does not measure the path it names")
	}
	loopMatch(b, d, wording("ascii"))
}

// BenchmarkMatchWording: the 100,000-word dictionary against wordings in other scripts.
func BenchmarkMatchWording(b *testing.B) {
	d := benchDictionary(b, 100000)
	for _, name := range []string{"ascii", "mixed", "cjk", "fullwidth"} {
		b.Run("text="+name, func(b *testing.B) {
			loopMatch(b, d, wording(name))
		})
	}
}

// BenchmarkBuild: compiling a dictionary, and the heap it keeps per word.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("words=%d", n), func(b *testing.B) {
			words := keywordstest.Words(n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d, err := Compile(all, words...)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(d)
			for b.Loop() {
				if _, err := Compile(all, words...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/word")
			b.ReportMetric(float64(len(d.ac.nodes))/float64(n), "states/word")
		})
	}
}
