// kgo drives segmentio/kafka-go 0.2.1 (Debian's golang-github-segmentio-kafka-go-dev), an old
// client still in use that speaks Produce v2 (message format v1), Fetch v2 (it reads message
// format v1), ListOffsets v1, Metadata v1 and the v0/v1 group APIs, against a broker.
//
//	kgo write BOOTSTRAP TOPIC CODEC FIRST N   writes keys k<i>, values "<codec>-<i>" and
//	                                           CreateTime 1500000000000+i for i in FIRST..FIRST+N-1
//	                                           (one partition) through a Writer; prints "wrote N"
//	kgo read BOOTSTRAP TOPIC OFFSET N          a partition Reader from OFFSET reads N messages;
//	                                           prints "msg <offset> <key> <value> <unix ms>" each
//	kgo group BOOTSTRAP TOPIC GROUP N          a group Reader reads N messages and commits them
//	                                           (synchronously); prints "msg ..." as read does
//
// Exits non-zero with a message on stderr on any error or after 60 s.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/gzip"
	"github.com/segmentio/kafka-go/lz4"
	"github.com/segmentio/kafka-go/snappy"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kgo: "+format+"\n", args...)
	os.Exit(1)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		die("bad number %q", s)
	}
	return n
}

func codec(name string) kafka.CompressionCodec {
	switch name {
	case "none":
		return nil
	case "gzip":
		return gzip.NewCompressionCodec()
	case "snappy":
		return snappy.NewCompressionCodec()
	case "lz4":
		return lz4.NewCompressionCodec()
	}
	die("unknown codec %q", name)
	return nil
}

func printMsg(m kafka.Message) {
	fmt.Printf("msg %d %s %s %d\n", m.Offset, m.Key, m.Value, m.Time.UnixNano()/int64(time.Millisecond))
}

func main() {
	if len(os.Args) < 6 {
		die("usage: kgo write|read|group BOOTSTRAP TOPIC ARG N")
	}
	cmd, bootstrap, topic := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch cmd {
	case "write":
		name, first, n := os.Args[4], atoi(os.Args[5]), atoi(os.Args[6])
		w := kafka.NewWriter(kafka.WriterConfig{
			Brokers:          []string{bootstrap},
			Topic:            topic,
			BatchSize:        50,
			BatchTimeout:     10 * time.Millisecond,
			RequiredAcks:     -1,
			CompressionCodec: codec(name),
		})
		msgs := make([]kafka.Message, 0, n)
		for i := first; i < first+n; i++ {
			msgs = append(msgs, kafka.Message{
				Key:   []byte(fmt.Sprintf("k%d", i)),
				Value: []byte(fmt.Sprintf("%s-%d", name, i)),
				Time:  time.Unix(0, (1500000000000+int64(i))*int64(time.Millisecond)),
			})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			die("write: %v", err)
		}
		if err := w.Close(); err != nil {
			die("close: %v", err)
		}
		fmt.Printf("wrote %d\n", n)
	case "read":
		offset, n := int64(atoi(os.Args[4])), atoi(os.Args[5])
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: topic, Partition: 0,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond})
		if err := r.SetOffset(offset); err != nil {
			die("set offset: %v", err)
		}
		for i := 0; i < n; i++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				die("read %d of %d: %v", i, n, err)
			}
			printMsg(m)
		}
		r.Close()
	case "group":
		group, n := os.Args[4], atoi(os.Args[5])
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: topic, GroupID: group,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond, SessionTimeout: 10 * time.Second})
		for i := 0; i < n; i++ {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				die("group read %d of %d: %v", i, n, err)
			}
			printMsg(m)
			if err := r.CommitMessages(ctx, m); err != nil {
				die("commit: %v", err)
			}
		}
		if err := r.Close(); err != nil {
			die("close: %v", err)
		}
	default:
		die("unknown command %q", cmd)
	}
}
