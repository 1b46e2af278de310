// Command composecheck validates a Compose file the way `docker compose config` does, without a
// Docker engine: compose-go loads it with the Compose Specification schema, interpolates it with
// the given env file (and nothing from the caller's environment, so the result is reproducible),
// resolves paths, enables every profile and checks consistency (e.g. depends_on targets). It then
// rejects any service that runs an image it does not build unless that image is pinned to a tag
// other than "latest" or to a digest.
//
// Usage: composecheck [-f docker-compose.yml] [-env-file .env.example] [-print]
//
// Exit status: 0 valid, 1 invalid (the reasons go to stderr), 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
)

func main() {
	file := flag.String("f", "docker-compose.yml", "Compose file to check")
	envFile := flag.String("env-file", ".env.example", "env file used for interpolation")
	show := flag.Bool("print", false, "print the resolved file, like `docker compose config`")
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	project, err := load(context.Background(), *file, *envFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %s: %v\n", *file, err)
		os.Exit(1)
	}
	if problems := unpinnedImages(project); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "composecheck: %s: %s\n", *file, p)
		}
		os.Exit(1)
	}
	if *show {
		out, err := project.MarshalYAML()
		if err != nil {
			fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(out)
		return
	}
	fmt.Printf("ok: %s: %d services, %d volumes\n", *file, len(project.Services), len(project.Volumes))
}

// load parses, validates and interpolates the file with every profile enabled.
func load(ctx context.Context, file, envFile string) (*types.Project, error) {
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithWorkingDirectory(dir),
		cli.WithEnvFiles(envFile),
		cli.WithDotEnv,
		cli.WithResolvedPaths(true),
		cli.WithProfiles([]string{"*"}),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, err
	}
	return options.LoadProject(ctx)
}

// unpinnedImages lists the services whose pulled image could change under the same reference.
func unpinnedImages(project *types.Project) []string {
	var problems []string
	for name, service := range project.Services {
		if service.Build != nil {
			continue // the image is built from this repository, not pulled
		}
		if err := pinned(service.Image); err != nil {
			problems = append(problems, fmt.Sprintf("service %q: %v", name, err))
		}
	}
	sort.Strings(problems)
	return problems
}

func pinned(image string) error {
	if image == "" {
		return errors.New("neither image nor build")
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return fmt.Errorf("image %q: %w", image, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil
	}
	tagged, ok := named.(reference.Tagged)
	if !ok || tagged.Tag() == "latest" {
		return fmt.Errorf("image %q is not pinned: use an exact tag (not latest) or a digest", image)
	}
	return nil
}
